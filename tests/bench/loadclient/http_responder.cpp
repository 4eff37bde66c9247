#include "http_responder.hpp"

#include <algorithm>
#include <cctype>

namespace loadclient {

namespace {

constexpr std::size_t kMaxRequestHead = 64 * 1024;

std::string lowercase(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

// Whether the request head asks to close the connection after the response (HTTP/1.0 without keep-alive, or
// an explicit "Connection: close" - what stock nginx's proxy_pass sends).
bool wants_close(std::string_view head) {
    const std::string lower = lowercase(head);
    const auto line_end = lower.find("\r\n");
    const std::string_view request_line = std::string_view(lower).substr(0, line_end);
    const bool http10 = request_line.find("http/1.0") != std::string_view::npos;
    const bool says_close = lower.find("\r\nconnection: close") != std::string::npos;
    const bool says_keepalive = lower.find("\r\nconnection: keep-alive") != std::string::npos;
    return says_close || (http10 && !says_keepalive);
}

}  // namespace

std::string make_exporter_response(std::size_t body_bytes) {
    std::string body;
    body.reserve(body_bytes + 64);
    for (std::size_t i = 0; body.size() < body_bytes; ++i)
        body += "bench_exporter_metric{series=\"" + std::to_string(i) + "\"} " + std::to_string(i % 997) + "\n";
    body.resize(body_bytes);
    if (body_bytes > 0) body.back() = '\n';
    return "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
           std::to_string(body_bytes) + "\r\n\r\n" + body;
}

bool HttpResponder::feed(const char* data, std::size_t len) {
    if (close_requested_) return true;  // anything after a closing request is ignored
    inbound_.append(data, len);
    parse_requests();
    return inbound_.size() <= kMaxRequestHead;
}

void HttpResponder::parse_requests() {
    for (;;) {
        const auto end = inbound_.find("\r\n\r\n");
        if (end == std::string::npos) return;
        const bool close = wants_close(std::string_view(inbound_).substr(0, end + 2));
        inbound_.erase(0, end + 4);
        ++queued_;
        ++requests_;
        if (close) {
            close_requested_ = true;
            inbound_.clear();
            return;
        }
    }
}

std::string_view HttpResponder::pending() const {
    if (queued_ == 0) return {};
    return std::string_view(response_).substr(offset_);
}

void HttpResponder::advance(std::size_t n) {
    offset_ += n;
    if (queued_ > 0 && offset_ >= response_.size()) {
        offset_ = 0;
        --queued_;
    }
}

}  // namespace loadclient
