#include "tunnel/cluster_hop.hpp"

#include <catch2/catch.hpp>

using namespace monitoring_proxy::tunnel;

TEST_CASE("a request without the hop header hops once to the holding node", "[ngx][cluster]") {
    CHECK(decide_hop({"node-b", "node-a", std::nullopt, true}) == HopVerdict::kHop);
}

TEST_CASE("the hop header stops a second hop, whatever its value", "[ngx][cluster]") {
    CHECK(decide_hop({"node-b", "node-a", "node-c", true}) == HopVerdict::kAlreadyHopped);
    CHECK(decide_hop({"node-b", "node-a", "", true}) == HopVerdict::kAlreadyHopped);
    CHECK(decide_hop({"node-b", "node-a", "garbage\x01", true}) == HopVerdict::kAlreadyHopped);
    CHECK(decide_hop({"", "node-a", "node-c", true}) == HopVerdict::kAlreadyHopped);
}

TEST_CASE("no hop without a node id, to itself, or without the header being sent", "[ngx][cluster]") {
    CHECK(decide_hop({"", "node-a", std::nullopt, true}) == HopVerdict::kNoSelfId);
    CHECK(decide_hop({"node-a", "node-a", std::nullopt, true}) == HopVerdict::kHolderIsSelf);
    CHECK(decide_hop({"node-b", "node-a", std::nullopt, false}) == HopVerdict::kNoHopHeader);
}

TEST_CASE("hop header values parse as node ids only", "[ngx][cluster]") {
    CHECK(parse_hop_header("node-a") == std::optional<std::string_view>("node-a"));
    CHECK(parse_hop_header(" \tnode-a.eu_1 ") == std::optional<std::string_view>("node-a.eu_1"));
    CHECK_FALSE(parse_hop_header(""));
    CHECK_FALSE(parse_hop_header("Node-A"));
    CHECK_FALSE(parse_hop_header("node a"));
    CHECK_FALSE(parse_hop_header(std::string(64, 'a')));
}

TEST_CASE("refusal log lines name the target, the holder and the reason", "[ngx][cluster]") {
    const HopRequest hopped{"node-b", "node-a", "node-c", true};
    const std::string line = hop_refusal_message(HopVerdict::kAlreadyHopped, "web1", hopped);
    CHECK_THAT(line, Catch::Contains("\"web1\"") && Catch::Contains("node \"node-a\"") &&
                         Catch::Contains("already forwarded once") && Catch::Contains("\"node-c\""));
    const HopRequest hostile{"node-b", "node-a", "x\r\ny", true};
    CHECK_THAT(hop_refusal_message(HopVerdict::kAlreadyHopped, "web1", hostile), Catch::Contains("malformed value"));
    CHECK_THAT(hop_refusal_message(HopVerdict::kNoHopHeader, "web1", {"node-b", "node-a", std::nullopt, false}),
               Catch::Contains("proxy_set_header Monitoring-Proxy-Hop $tunnel_hop;"));
    CHECK_THAT(hop_refusal_message(HopVerdict::kHolderIsSelf, "web1", {"node-a", "node-a", std::nullopt, true}),
               Catch::Contains("stale"));
}
