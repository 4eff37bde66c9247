#include "monitoring_proxy/codec.hpp"

#include <catch2/catch.hpp>

using namespace monitoring_proxy::registry;

TEST_CASE("target records round-trip", "[codec]") {
    TargetRecord t;
    t.fixed_port = 20001;
    t.created_unix = 1700000000;
    t.origin = Origin::kImport;
    t.metrics_path = "/probe";
    t.labels = {{"env", "prod"}, {"team", "ops ünïcode"}};
    t.key_fingerprints = {"SHA256:abc"};
    t.path_prefixes = {"/metrics", "/probe"};
    CHECK(decode_target(encode(t)) == t);
    CHECK(decode_target(encode(TargetRecord{})) == TargetRecord{});
}

TEST_CASE("tunnel and instance records round-trip", "[codec]") {
    TunnelRecord r{20005, 0x1122334455667788ull, 1700000000123, "203.0.113.7:51234", "SHA256:xyz"};
    CHECK(decode_tunnel(encode(r)) == r);
    CHECK(tunnel_port(encode(r)) == 20005);
    InstanceRecord i{4242, 987654321, 1700000000000};
    CHECK(decode_instance(encode(i)) == i);
    CHECK(decode_u64(encode_u64(0xfedcba9876543210ull)) == 0xfedcba9876543210ull);
}

TEST_CASE("every truncation of a record is rejected, never over-read", "[codec]") {
    TargetRecord t;
    t.labels = {{"a", "b"}};
    t.key_fingerprints = {"SHA256:k"};
    t.path_prefixes = {"/m"};
    const std::string bytes = encode(t);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        CHECK_THROWS_AS(decode_target(bytes.substr(0, n)), DecodeError);
        CHECK_THROWS_AS(target_allows_path(bytes.substr(0, n), "/m"), DecodeError);
    }
    CHECK_THROWS_WITH(decode_target(bytes + "x"), Catch::Contains("trailing"));
    std::string wrong_version = bytes;
    wrong_version[0] = 9;
    CHECK_THROWS_WITH(decode_target(wrong_version), Catch::Contains("unknown record version 9"));
    CHECK_THROWS_AS(decode_u64("short"), DecodeError);
}

TEST_CASE("path prefixes allow their subtree only", "[codec]") {
    TargetRecord t;
    CHECK(target_allows_path(encode(t), "/anything"));
    t.path_prefixes = {"/metrics", "/probe/"};
    const std::string bytes = encode(t);
    CHECK(target_allows_path(bytes, "/metrics"));
    CHECK(target_allows_path(bytes, "/metrics/x"));
    CHECK_FALSE(target_allows_path(bytes, "/metricsfoo"));
    CHECK(target_allows_path(bytes, "/probe/a"));
    CHECK_FALSE(target_allows_path(bytes, "/probe"));
    CHECK_FALSE(target_allows_path(bytes, "/"));
}
