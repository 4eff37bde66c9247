// The cluster schema's keys and values (cluster_schema.hpp): round trips, and hostile values named by key.
#include <catch2/catch.hpp>

#include "monitoring_proxy/cluster_schema.hpp"

using namespace monitoring_proxy::cluster;

TEST_CASE("cluster keys are versioned under the prefix and parse back") {
    const std::string p = normalise_prefix("/mp");
    CHECK(p == "/mp/");
    CHECK(key_of(p, KeyKind::kTarget, "web1") == "/mp/v1/targets/web1");
    CHECK(key_of(p, KeyKind::kTunnel, "web1") == "/mp/v1/tunnels/web1");
    CHECK(key_of(p, KeyKind::kNode, "proxy-a") == "/mp/v1/nodes/proxy-a");
    auto k = parse_key(p, "/mp/v1/tunnels/web1");
    CHECK(k.kind == KeyKind::kTunnel);
    CHECK(k.name == "web1");
    CHECK_THROWS_WITH(parse_key(p, "/mp/v1/other/x"), Catch::Contains("/mp/v1/other/x"));
    CHECK_THROWS_WITH(parse_key(p, "/mp/v1/targets/Bad Name"), Catch::Contains("/mp/v1/targets/Bad Name"));
    CHECK_THROWS_AS(parse_key(p, "/mp/v2/targets/web1"), ClusterDecodeError);
    CHECK(node_id_problem("proxy-a.dc1") == std::nullopt);
    CHECK(node_id_problem("Proxy"));
}

TEST_CASE("cluster values round trip; corrupt ones are errors naming the key") {
    ClusterTunnelValue t{"proxy-a", "10.0.0.1:80", 1700000000123, "SHA256:abc", "203.0.113.7:5555", 42};
    CHECK(decode_tunnel_value("k", encode(t)) == t);
    ClusterNodeValue n{"10.0.0.1:80", 1700000000000, 0x1234};
    CHECK(decode_node_value("k", encode(n)) == n);
    const std::string bytes = encode(t);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut)
        CHECK_THROWS_WITH(decode_tunnel_value("/mp/v1/tunnels/web1", bytes.substr(0, cut)),
                          Catch::Contains("/mp/v1/tunnels/web1"));
    CHECK_THROWS_WITH(decode_tunnel_value("/k", bytes + "x"), Catch::Contains("trailing"));
    CHECK_THROWS_WITH(decode_target_value("/mp/v1/targets/web1", "garbage"), Catch::Contains("/mp/v1/targets/web1"));
    ClusterTunnelValue bad = t;
    bad.node_id = "Not A Node";
    CHECK_THROWS_WITH(decode_tunnel_value("/k", encode(bad)), Catch::Contains("node id"));
}
