// The load client's exporter: request framing, keep-alive vs close, and the exact response bytes.
#include <catch2/catch.hpp>

#include "http_responder.hpp"

using loadclient::HttpResponder;
using loadclient::make_exporter_response;

namespace {
std::string drain(HttpResponder& h, std::size_t chunk) {
    std::string out;
    for (int guard = 0; guard < 100000 && !h.pending().empty(); ++guard) {
        const auto p = h.pending();
        const std::size_t n = std::min(chunk, p.size());
        out.append(p.substr(0, n));
        h.advance(n);
    }
    return out;
}
}  // namespace

TEST_CASE("the response has a Content-Length equal to its body", "[loadclient]") {
    const std::string r = make_exporter_response(153600);
    const auto head_end = r.find("\r\n\r\n");
    REQUIRE(head_end != std::string::npos);
    CHECK(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(r.find("Content-Length: 153600\r\n") != std::string::npos);
    CHECK(r.size() - head_end - 4 == 153600);
    CHECK(make_exporter_response(0).find("Content-Length: 0\r\n") != std::string::npos);
}

TEST_CASE("keep-alive requests are answered one response each, split reads included", "[loadclient]") {
    const std::string response = make_exporter_response(100);
    HttpResponder h(response);
    CHECK(h.pending().empty());
    REQUIRE(h.feed("GET /a HTTP/1.1\r\nHost: x\r", 25));
    CHECK(h.pending().empty());
    REQUIRE(h.feed("\n\r\nGET /b HTTP/1.1\r\n\r\n", 22));
    CHECK(h.requests() == 2);
    CHECK(drain(h, 7) == response + response);
    CHECK_FALSE(h.done());
}

TEST_CASE("HTTP/1.0 and Connection: close end the exchange after the response", "[loadclient]") {
    const std::string response = make_exporter_response(10);
    for (const std::string req : {"GET / HTTP/1.0\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"}) {
        HttpResponder h(response);
        REQUIRE(h.feed(req.data(), req.size()));
        CHECK_FALSE(h.done());
        CHECK(drain(h, 1000) == response);
        CHECK(h.done());
    }
    HttpResponder keep(response);
    const std::string req = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    REQUIRE(keep.feed(req.data(), req.size()));
    drain(keep, 1000);
    CHECK_FALSE(keep.done());
}

TEST_CASE("a request head without an end is refused past 64 KiB", "[loadclient]") {
    const std::string response = make_exporter_response(10);
    HttpResponder h(response);
    const std::string junk(70000, 'a');
    CHECK_FALSE(h.feed(junk.data(), junk.size()));
}
