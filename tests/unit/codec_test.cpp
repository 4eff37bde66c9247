#include "monitoring_proxy/codec.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <stdexcept>

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
    TunnelRecord r{20005, 0x1122334455667788ull, 1700000000123, "203.0.113.7:51234", "SHA256:xyz", 0x7f0a0b0c};
    CHECK(decode_tunnel(encode(r)) == r);
    CHECK(tunnel_endpoint(encode(r)).port == 20005);
    CHECK(tunnel_endpoint(encode(r)).address == 0x7f0a0b0c);
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

TEST_CASE("tunnel records of version 1 still decode, with the 127.0.0.1 address they meant", "[codec]") {
    // What a tunneld of before per-forward addresses wrote: version 1, no address field.
    const TunnelRecord current{20005, 7, 1700000000123, "203.0.113.7:51234", "SHA256:xyz", 0x7f0a0b0c};
    std::string v1 = encode(current);
    v1.resize(v1.size() - 4);
    v1[0] = 1;
    TunnelRecord expected = current;
    expected.address = kLoopbackAddress;
    CHECK(decode_tunnel(v1) == expected);
    CHECK(tunnel_endpoint(v1).address == kLoopbackAddress);
    CHECK_THROWS_WITH(decode_tunnel(v1 + "abcd"), Catch::Contains("trailing"));
}

TEST_CASE("a tunnel record is refused whole, on the hot path too, when any field is off", "[codec]") {
    const std::string bytes = encode(TunnelRecord{20005, 7, 1, "c", "f", 0x7f000002});
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        CHECK_THROWS_AS(tunnel_endpoint(bytes.substr(0, n)), DecodeError);
    }
    CHECK_THROWS_WITH(tunnel_endpoint(bytes + "x"), Catch::Contains("trailing"));
    // An address outside 127.0.0.0/8 would make nginx connect off the machine: never accepted.
    CHECK_THROWS_WITH(tunnel_endpoint(encode(TunnelRecord{20005, 7, 1, "c", "f", 0x0a000001})),
                      Catch::Contains("127.0.0.0/8"));
    std::string future = bytes;
    future[0] = 3;
    CHECK_THROWS_WITH(decode_tunnel(future), Catch::Contains("unknown record version 3"));
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

TEST_CASE("every tunneld counter key round-trips through the vocabulary", "[codec][counters]") {
    std::set<int> ids;
    std::set<std::string> names;
    for (const auto& spec : kTunneldCounters) {
        CAPTURE(spec.name);
        CHECK(ids.insert(static_cast<int>(spec.id)).second);  // ids are stored: unique
        CHECK(names.insert(spec.name).second);
        const std::string label = spec.label == CounterLabel::kNone ? "" : "web1";
        const std::string encoded = encode_counter_key(spec.id, label);  // the decoded view points into it
        const auto key = decode_counter_key(encoded);
        REQUIRE(key);
        CHECK(key->spec == &spec);
        CHECK(key->label_value == label);
        CHECK(&counter_spec(spec.id) == &spec);
    }
    const std::string refused = encode_counter_key(TunneldCounter::kForwardsRefused, "port_range");
    CHECK(counter_text(*decode_counter_key(refused)) == R"(forwards_refused_total{reason="port_range"})");
    const std::string sessions = encode_counter_key(TunneldCounter::kSessions);
    CHECK(counter_text(*decode_counter_key(sessions)) == "sessions_total");
}

TEST_CASE("counter keys outside the vocabulary are refused, never guessed", "[codec][counters]") {
    CHECK_THROWS_AS(encode_counter_key(TunneldCounter::kSessions, "x"), std::invalid_argument);
    CHECK_THROWS_AS(encode_counter_key(TunneldCounter::kForwardsRefused), std::invalid_argument);
    CHECK_FALSE(decode_counter_key(""));
    CHECK_FALSE(decode_counter_key("sessions_total"));  // the text keys tunnelds wrote before the vocabulary
    CHECK_FALSE(decode_counter_key(std::string(1, '\xee')));
    CHECK_FALSE(decode_counter_key(encode_counter_key(TunneldCounter::kSessions) + "label"));
    CHECK_FALSE(decode_counter_key(std::string(1, static_cast<char>(TunneldCounter::kForwardsRefused))));
}
