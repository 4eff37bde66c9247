// The pure part of tunneld's cluster mirror (cluster/mirror_state.hpp): an etcd list or a watch batch applied to
// the declared targets and to the cluster view; values that do not decode keep the key's last good value.
#include <catch2/catch.hpp>

#include "cluster/mirror_state.hpp"
#include "monitoring_proxy/codec.hpp"

using namespace tunneld;
namespace cl = monitoring_proxy::cluster;
namespace reg = monitoring_proxy::registry;

namespace {

const std::string kPrefix = "/mp/";

std::string target_key(const std::string& name) { return cl::key_of(kPrefix, cl::KeyKind::kTarget, name); }
std::string tunnel_key(const std::string& name) { return cl::key_of(kPrefix, cl::KeyKind::kTunnel, name); }
std::string node_key(const std::string& id) { return cl::key_of(kPrefix, cl::KeyKind::kNode, id); }

reg::TargetRecord target(const std::string& env) {
    reg::TargetRecord r;
    r.labels = {{"env", env}};
    return r;
}

MirrorEvent put(std::string key, std::string value) { return {MirrorEvent::Type::kPut, std::move(key), std::move(value)}; }
MirrorEvent del(std::string key) { return {MirrorEvent::Type::kDelete, std::move(key), {}}; }

std::string tunnel_value(const std::string& node, std::int64_t connected, const std::string& http = "127.0.0.2:8080") {
    return cl::encode(cl::ClusterTunnelValue{node, http, connected, "SHA256:k", "203.0.113.7:5000", 1});
}
std::string node_value(const std::string& http) { return cl::encode(cl::ClusterNodeValue{http, 1700000000000, 7}); }

MirrorState state() { return MirrorState(kPrefix, "node-a", numeric_http_endpoint); }

}  // namespace

TEST_CASE("a list gives the declared targets and the view of other nodes' tunnels", "[mirror]") {
    MirrorState s = state();
    s.seed_targets({{"gone", target("old")}, {"web1", target("old")}});
    auto c = s.apply_list({put(target_key("web1"), reg::encode(target("prod"))),
                           put(target_key("web2"), reg::encode(target("dev"))),
                           put(tunnel_key("web1"), tunnel_value("node-b", 100)),
                           put(tunnel_key("web2"), tunnel_value("node-a", 100)),  // our own: not in the view
                           put(node_key("node-a"), node_value("127.0.0.1:8080")),
                           put(node_key("node-b"), node_value("127.0.0.2:8080"))},
                          5000);
    CHECK(c.errors.empty());
    CHECK(c.targets_put.size() == 2);
    CHECK(c.targets_put.at("web1") == target("prod"));
    CHECK(c.targets_removed == std::set<std::string>{"gone"});
    CHECK(c.held_elsewhere == std::set<std::string>{"web1"});
    auto view = s.view();
    REQUIRE(view.tunnels.size() == 1);
    CHECK(view.tunnels.at("web1").node_id == "node-b");
    CHECK(view.tunnels.at("web1").http == reg::HttpEndpoint{0x7f000002, 8080});
    REQUIRE(view.nodes.size() == 2);
    CHECK(view.nodes.at("node-a").tunnels_held == 1);
    CHECK(view.nodes.at("node-b").tunnels_held == 1);
    CHECK(view.nodes.at("node-b").alive);
    CHECK(view.nodes.at("node-b").last_seen_unix_ms == 5000);
}

TEST_CASE("a watch batch applies puts and deletes in order", "[mirror]") {
    MirrorState s = state();
    s.apply_list({put(target_key("web1"), reg::encode(target("prod"))),
                  put(node_key("node-b"), node_value("127.0.0.2:8080"))},
                 1);
    auto c = s.apply_events({put(target_key("web2"), reg::encode(target("dev"))), del(target_key("web1")),
                             put(target_key("web3"), reg::encode(target("x"))), del(target_key("web3")),
                             put(tunnel_key("web2"), tunnel_value("node-b", 200))},
                            2);
    CHECK(c.targets_put.size() == 1);
    CHECK(c.targets_put.count("web2"));
    CHECK(c.targets_removed == std::set<std::string>{"web1", "web3"});
    CHECK(c.view_tunnels == std::set<std::string>{"web2"});
    CHECK(c.held_elsewhere == std::set<std::string>{"web2"});
    CHECK(c.nodes_changed);
    CHECK(s.view_nodes().at("node-b").tunnels_held == 1);

    // The tunnel moves to this node: it leaves the view, nothing is held elsewhere.
    c = s.apply_events({put(tunnel_key("web2"), tunnel_value("node-a", 300))}, 3);
    CHECK(c.view_tunnels == std::set<std::string>{"web2"});
    CHECK(c.held_elsewhere.empty());
    CHECK_FALSE(s.view_tunnel("web2"));

    // The node's lease goes: listed, not alive.
    c = s.apply_events({del(node_key("node-b"))}, 4);
    CHECK(c.nodes_changed);
    CHECK_FALSE(s.view_nodes().at("node-b").alive);
}

TEST_CASE("a value that does not decode keeps the key's last good value and touches no other key", "[mirror]") {
    MirrorState s = state();
    s.apply_list({put(target_key("web1"), reg::encode(target("prod"))),
                  put(tunnel_key("web1"), tunnel_value("node-b", 100))},
                 1);
    auto c = s.apply_events({put(target_key("web1"), "garbage"), put(tunnel_key("web1"), "\x01garbage"),
                             put(target_key("web2"), reg::encode(target("dev"))),
                             put(tunnel_key("web3"), tunnel_value("node-b", 100, "not-an-endpoint")),
                             put(tunnel_key("web4"), tunnel_value("Bad Node", 100))},
                            2);
    REQUIRE(c.errors.size() == 4);
    CHECK_THAT(c.errors[0], Catch::StartsWith("etcd key " + target_key("web1") + ": "));
    CHECK_THAT(c.errors[1], Catch::StartsWith("etcd key " + tunnel_key("web1") + ": "));
    CHECK_THAT(c.errors[2], Catch::Contains("not-an-endpoint"));
    CHECK_THAT(c.errors[3], Catch::Contains(tunnel_key("web4")));
    CHECK(s.targets().at("web1") == target("prod"));
    CHECK(s.targets().count("web2"));
    CHECK(c.targets_put.size() == 1);
    CHECK(c.targets_removed.empty());
    CHECK(s.view_tunnel("web1")->node_id == "node-b");
    CHECK_FALSE(s.view_tunnel("web3"));

    // A later list with the garbage still there keeps the good value too (and so does a fresh node, seeded from
    // its registry).
    c = s.apply_list({put(target_key("web1"), "garbage"), put(target_key("web2"), reg::encode(target("dev")))}, 3);
    CHECK(c.errors.size() == 1);
    CHECK(s.targets().at("web1") == target("prod"));
    CHECK(c.targets_removed.empty());
    MirrorState fresh = state();
    fresh.seed_targets({{"web1", target("prod")}});
    c = fresh.apply_list({put(target_key("web1"), "garbage")}, 1);
    CHECK(fresh.targets().at("web1") == target("prod"));
    CHECK(c.targets_removed.empty());
}

TEST_CASE("foreign keys are errors, other layout versions are ignored", "[mirror]") {
    MirrorState s = state();
    auto c = s.apply_list({put("/mp/v1/no-such-kind/x", "x"), put("/mp/zz-from-the-future/v99/web1", "x"),
                           put("/mp/v2/targets/web1", "x"), put(target_key("Not..A.Name"), "x"),
                           put(target_key("web1"), reg::encode(target("prod")))},
                          1);
    REQUIRE(c.errors.size() == 3);
    CHECK_THAT(c.errors[0], Catch::Contains("/mp/v1/no-such-kind/x"));
    CHECK_THAT(c.errors[1], Catch::Contains("/mp/zz-from-the-future/v99/web1"));
    CHECK_THAT(c.errors[2], Catch::Contains("Not..A.Name"));
    CHECK(s.targets().size() == 1);
    c = s.apply_events({put("/mp/v1/no-such-kind/y", "x"), del(target_key("Bad Name"))}, 2);
    CHECK(c.errors.size() == 2);
    CHECK(s.targets().size() == 1);
}
