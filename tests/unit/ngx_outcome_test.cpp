#include "tunnel/outcome.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>

using namespace monitoring_proxy::tunnel;

TEST_CASE("each outcome maps to the status ngx_module/README.md documents", "[ngx][outcome]") {
    CHECK(status_for(Outcome::kProxied) == 0u);
    CHECK(status_for(Outcome::kUnknown) == 404u);
    CHECK(status_for(Outcome::kNotConnected) == 503u);
    CHECK(status_for(Outcome::kInvalidName) == 400u);
    CHECK(status_for(Outcome::kPathForbidden) == 403u);
    CHECK(status_for(Outcome::kRegistryError) == 500u);
    CHECK(status_for(Outcome::kUpstreamFailed) == 502u);
    CHECK(status_for(Outcome::kUpstreamTimeout) == 504u);
    CHECK(status_for(Outcome::kHopped) == 0u);
    CHECK(status_for(Outcome::kHopRefused) == 503u);
}

TEST_CASE("outcome labels are distinct snake_case words", "[ngx][outcome]") {
    std::set<std::string> labels;
    for (std::size_t i = 0; i < kOutcomeCount; ++i) {
        const auto label = std::string(outcome_label(static_cast<Outcome>(i)));
        INFO(label);
        CHECK(label.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos);
        labels.insert(label);
    }
    CHECK(labels.size() == kOutcomeCount);
}

TEST_CASE("nginx's own 502 and 504 on a proxied request become upstream outcomes", "[ngx][outcome]") {
    CHECK(final_outcome(Outcome::kProxied, 200) == Outcome::kProxied);
    CHECK(final_outcome(Outcome::kProxied, 500) == Outcome::kProxied);
    CHECK(final_outcome(Outcome::kProxied, 502) == Outcome::kUpstreamFailed);
    CHECK(final_outcome(Outcome::kProxied, 504) == Outcome::kUpstreamTimeout);
    CHECK(final_outcome(Outcome::kUnknown, 504) == Outcome::kUnknown);
    // A hop to a dead peer is nginx's own 502/504 as well.
    CHECK(final_outcome(Outcome::kHopped, 200) == Outcome::kHopped);
    CHECK(final_outcome(Outcome::kHopped, 502) == Outcome::kUpstreamFailed);
    CHECK(final_outcome(Outcome::kHopped, 504) == Outcome::kUpstreamTimeout);
}

TEST_CASE("reply bodies carry the documented texts", "[ngx][outcome]") {
    CHECK(reply_body(Outcome::kUnknown, "web1") == "unknown target \"web1\"\n");
    CHECK(reply_body(Outcome::kNotConnected, "web1") == "target \"web1\" is not connected\n");
    CHECK(reply_body(Outcome::kInvalidName, "Web1").find("[a-z0-9]") != std::string::npos);
    CHECK(reply_body(Outcome::kProxied, "web1").empty());
}

TEST_CASE("hostile names are made harmless before they are echoed", "[ngx][outcome]") {
    CHECK(printable_name("a\"b\\c\r\nd") == "a?b?c??d");
    CHECK(printable_name("\xff\x01") == "??");
    const std::string long_name(200, 'x');
    CHECK(printable_name(long_name) == std::string(64, 'x') + "...");
    CHECK(reply_body(Outcome::kInvalidName, "x\ny").find('\n') == reply_body(Outcome::kInvalidName, "x\ny").size() - 1);
}
