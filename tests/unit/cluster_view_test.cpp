// The cluster view of the local registry: records, the writer API tunneld's mirror uses, the module's reader.
#include "monitoring_proxy/address.hpp"
#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/reader.hpp"
#include "monitoring_proxy/registry.hpp"
#include "temp_registry.hpp"

#include <catch2/catch.hpp>

using namespace monitoring_proxy::registry;

namespace {
constexpr std::uint32_t kNodeB = 0x7f000002;  // 127.0.0.2

ClusterTunnelRecord tunnel_on(std::string node, std::uint16_t port = 8080) {
    return ClusterTunnelRecord{std::move(node), HttpEndpoint{kNodeB, port}, 1700000000123, "SHA256:k",
                               "203.0.113.7:5000"};
}

ClusterStateRecord state_of(std::string self, std::int64_t revision = 1) {
    return ClusterStateRecord{std::move(self), EtcdState::kConnected, 1700000000000, revision};
}

OpenOptions options_for(const TempDir& d) {
    OpenOptions o;
    o.dir = d.sub("reg");
    o.group = "root";
    return o;
}

void declare(Registry& reg, const std::string& name) {
    reg.update_declared([&](DeclaredTxn& txn) { txn.put(name, TargetRecord{}); });
}

// Every strict prefix and one trailing byte more: all refused.
template <class Decode>
void check_refuses_damage(const std::string& bytes, Decode decode) {
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        CHECK_THROWS_AS(decode(bytes.substr(0, n)), DecodeError);
    }
    CHECK_THROWS_WITH(decode(bytes + "x"), Catch::Contains("trailing"));
    std::string future = bytes;
    future[0] = 2;
    CHECK_THROWS_WITH(decode(future), Catch::Contains("unknown record version 2"));
}
}  // namespace

TEST_CASE("cluster records round-trip", "[cluster][codec]") {
    const ClusterTunnelRecord t = tunnel_on("node-b");
    CHECK(decode_cluster_tunnel(encode(t)) == t);
    CHECK(cluster_hop(encode(t)).node_id == "node-b");
    CHECK(cluster_hop(encode(t)).http == HttpEndpoint{kNodeB, 8080});
    const ClusterNodeRecord n{HttpEndpoint{kNodeB, 8080}, 12, 1700000000999, true};
    CHECK(decode_cluster_node(encode(n)) == n);
    const ClusterStateRecord s{"node-a", EtcdState::kDegraded, 1700000000555, 4242};
    CHECK(decode_cluster_state(encode(s)) == s);
    CHECK(cluster_self_id(encode(s)) == "node-a");
}

TEST_CASE("damaged cluster records are refused whole, never over-read", "[cluster][codec]") {
    check_refuses_damage(encode(tunnel_on("node-b")), decode_cluster_tunnel);
    check_refuses_damage(encode(tunnel_on("node-b")), cluster_hop);
    check_refuses_damage(encode(ClusterNodeRecord{HttpEndpoint{kNodeB, 1}, 1, 1, true}), decode_cluster_node);
    check_refuses_damage(encode(state_of("node-a")), decode_cluster_state);
    check_refuses_damage(encode(state_of("node-a")), cluster_self_id);
}

TEST_CASE("cluster records with values no writer may store are refused", "[cluster][codec]") {
    // A node id goes into the Monitoring-Proxy-Hop header: never a byte outside the id grammar.
    CHECK_THROWS_WITH(cluster_hop(encode(tunnel_on("b\r\nX-Evil: 1"))), Catch::Contains("not a valid node id"));
    CHECK_THROWS_WITH(cluster_self_id(encode(state_of(""))), Catch::Contains("not a valid node id"));
    CHECK_THROWS_WITH(cluster_hop(encode(tunnel_on("node-b", 0))), Catch::Contains("port 0"));
    ClusterStateRecord s = state_of("a");
    s.etcd = static_cast<EtcdState>(7);
    CHECK_THROWS_WITH(decode_cluster_state(encode(s)), Catch::Contains("unknown etcd state 7"));
    std::string node = encode(ClusterNodeRecord{HttpEndpoint{kNodeB, 1}, 1, 1, true});
    node.back() = 2;
    CHECK_THROWS_WITH(decode_cluster_node(node), Catch::Contains("alive"));
}

TEST_CASE("IPv4 endpoints parse strictly", "[cluster]") {
    using monitoring_proxy::parse_ipv4_endpoint;
    auto e = parse_ipv4_endpoint("127.0.0.2:8080");
    REQUIRE(e);
    CHECK(e->address == kNodeB);
    CHECK(e->port == 8080);
    for (const char* bad : {"", "127.0.0.2", "127.0.0.2:", "127.0.0.2:0", "127.0.0.2:65536", "127.0.0:80",
                            "127.0.0.256:80", "proxy-b:80", "127.0.0.2.1:80", "127.0.0.2:80x", " 127.0.0.2:80"})
        CHECK_FALSE(parse_ipv4_endpoint(bad));
}

TEST_CASE("the cluster view is replaced whole, changed in batches, and removed", "[cluster][registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    CHECK_FALSE(reg.cluster_state());
    CHECK(reg.cluster_view().tunnels.empty());

    ClusterView view;
    view.tunnels = {{"web1", tunnel_on("node-b")}, {"web2", tunnel_on("node-b")}};
    view.nodes = {{"node-a", ClusterNodeRecord{HttpEndpoint{0x7f000001, 80}, 0, 5, true}},
                  {"node-b", ClusterNodeRecord{HttpEndpoint{kNodeB, 8080}, 2, 5, true}}};
    reg.replace_cluster_view(view, state_of("node-a", 10));
    CHECK(reg.cluster_view().tunnels == view.tunnels);
    CHECK(reg.cluster_view().nodes == view.nodes);
    CHECK(reg.cluster_state() == state_of("node-a", 10));

    // A watch batch, in event order: a name put then removed in one batch ends removed.
    reg.update_cluster([](ClusterTxn& txn) {
        txn.put_tunnel("web3", tunnel_on("node-c"));
        CHECK(txn.remove_tunnel("web1"));
        txn.put_tunnel("web4", tunnel_on("node-c"));
        CHECK(txn.remove_tunnel("web4"));
        CHECK_FALSE(txn.remove_tunnel("never"));
        auto state = txn.state();
        state->applied_revision = 11;
        txn.set_state(*state);
    });
    CHECK(reg.get_cluster_tunnel("web3")->node_id == "node-c");
    CHECK_FALSE(reg.get_cluster_tunnel("web1"));
    CHECK_FALSE(reg.get_cluster_tunnel("web4"));
    CHECK(reg.cluster_state()->applied_revision == 11);

    // A list after a compaction: exactly the new view.
    ClusterView relisted;
    relisted.tunnels = {{"web9", tunnel_on("node-b")}};
    reg.replace_cluster_view(relisted, state_of("node-a", 50));
    CHECK(reg.cluster_view().tunnels == relisted.tunnels);
    CHECK(reg.cluster_view().nodes.empty());

    reg.set_cluster_state(ClusterStateRecord{"node-a", EtcdState::kDegraded, 7, 50});
    CHECK(reg.cluster_state()->etcd == EtcdState::kDegraded);

    reg.leave_cluster();
    CHECK_FALSE(reg.cluster_state());
    CHECK(reg.cluster_view().tunnels.empty());
}

TEST_CASE("a refused cluster change leaves the view as it was", "[cluster][registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    reg.update_cluster([](ClusterTxn& txn) { txn.put_tunnel("web1", tunnel_on("node-b")); });
    auto bad_batch = [&](auto change) {
        CHECK_THROWS_AS(reg.update_cluster([&](ClusterTxn& txn) {
            CHECK(txn.remove_tunnel("web1"));
            change(txn);
        }),
                        RefusedChange);
    };
    bad_batch([](ClusterTxn& txn) { txn.put_tunnel("Bad Name", tunnel_on("node-b")); });
    bad_batch([](ClusterTxn& txn) { txn.put_tunnel("web2", tunnel_on("node b")); });
    bad_batch([](ClusterTxn& txn) { txn.put_tunnel("web2", tunnel_on("node-b", 0)); });
    bad_batch([](ClusterTxn& txn) { txn.put_node("x", ClusterNodeRecord{}); });
    bad_batch([](ClusterTxn& txn) { txn.set_state(state_of("")); });
    CHECK(reg.get_cluster_tunnel("web1") == tunnel_on("node-b"));
}

TEST_CASE("the reader prefers a local tunnel, then a cluster one, with both node ids", "[cluster][reader]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    declare(reg, "web1");
    declare(reg, "web2");
    Reader reader(d.sub("reg"));
    CHECK(reader.resolve("web1", "/metrics").status == Resolution::kNotConnected);
    CHECK_FALSE(reader.cluster_state());

    reg.replace_cluster_view(ClusterView{{{"web1", tunnel_on("node-b", 8081)}, {"gone", tunnel_on("node-b")}}, {}},
                             state_of("node-a"));
    Resolved r = reader.resolve("web1", "/metrics");
    CHECK(r.status == Resolution::kCluster);
    CHECK(r.address == kNodeB);
    CHECK(r.port == 8081);
    CHECK(r.holder.view() == "node-b");
    CHECK(r.self.view() == "node-a");
    // Declared targets still decide first: a cluster record for an undeclared name is not routed.
    CHECK(reader.resolve("gone", "/metrics").status == Resolution::kUnknown);

    reg.update_live([](LiveTxn& l) { l.put_tunnel("web1", TunnelRecord{20011, 1, 0, "c", "f"}); });
    r = reader.resolve("web1", "/metrics");
    CHECK(r.status == Resolution::kLive);
    CHECK(r.port == 20011);

    CHECK(reader.cluster_state()->node_id == "node-a");
    CHECK(reader.cluster_tunnel("web1")->http.port == 8081);
    CHECK_FALSE(reader.cluster_tunnel("web2"));
    CHECK(reader.cluster_tunnels().size() == 2);
    CHECK(reader.cluster_nodes().empty());
}

TEST_CASE("a corrupt cluster record is a decode error for that target only", "[cluster][reader]") {
    TempDir d;
    {
        auto reg = Registry::open(options_for(d));
        declare(reg, "web1");
        declare(reg, "web2");
        reg.replace_cluster_view(ClusterView{{{"web2", tunnel_on("node-b")}}, {}}, state_of("node-a"));
    }
    // Write a damaged value straight into cluster_tunnels, as a bug or a foreign writer might.
    MDB_env* env;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    REQUIRE(mdb_env_open(env, (d.sub("reg") + "/live").c_str(), 0, 0640) == 0);
    MDB_txn* txn;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_dbi dbi;
    REQUIRE(mdb_dbi_open(txn, kDbClusterTunnels, 0, &dbi) == 0);
    std::string bad = encode(tunnel_on("node-b")) + "junk";
    MDB_val k{4, const_cast<char*>("web1")}, v{bad.size(), bad.data()};
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);

    Reader reader(d.sub("reg"));
    CHECK_THROWS_WITH(reader.resolve("web1", "/"), Catch::Contains("cluster tunnel record: 4 trailing bytes"));
    CHECK(reader.resolve("web2", "/").status == Resolution::kCluster);
    CHECK_THROWS_AS(reader.cluster_tunnel("web1"), DecodeError);
}
