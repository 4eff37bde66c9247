// Test-only: puts live tunnel records (and the cluster view) into a registry without tunneld or etcd, so
// end-to-end tests of the nginx module can point a target at any local port or any other proxy.
//
//   mp-registry-fixture --registry DIR live NAME PORT   record a live tunnel NAME -> 127.0.0.1:PORT
//   mp-registry-fixture --registry DIR gone NAME        remove it
//   mp-registry-fixture --registry DIR future NAME      rewrite target NAME's record as an unknown (newer)
//                                                       record version, as a newer tunnelctl might write it
//   mp-registry-fixture --registry DIR schema-1 -       make the declared environment look as schema version 1
//                                                       wrote it (no fixed_ports index), to test migrate
// The cluster view, as tunneld's etcd mirror writes it:
//   mp-registry-fixture --registry DIR cluster-self NODE [connected|degraded]
//                                                       this node's id and etcd state (meta "cluster")
//   mp-registry-fixture --registry DIR cluster-tunnel NAME NODE A.B.C.D:PORT
//                                                       node NODE (nginx at A.B.C.D:PORT) holds NAME's tunnel
//   mp-registry-fixture --registry DIR cluster-gone NAME
//   mp-registry-fixture --registry DIR cluster-node NODE A.B.C.D:PORT TUNNELS alive|dead
//   mp-registry-fixture --registry DIR cluster-corrupt NAME
//                                                       a damaged cluster_tunnels value for NAME
//   mp-registry-fixture --registry DIR cluster-leave -  back to single-node (view and state removed)
//
// New files get the group from $MONITORING_PROXY_REGISTRY_GROUP (nginx workers must open lock.mdb).
#include "monitoring_proxy/address.hpp"
#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/registry.hpp"

#include <chrono>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace monitoring_proxy::registry;
using Args = std::vector<std::string>;

// Owner of the fixture's records; tunneld instances use other ids, and nothing here sweeps.
constexpr std::uint64_t kFixtureInstance = 0xf1c7;

int usage() {
    std::fprintf(stderr,
                 "usage: mp-registry-fixture --registry DIR live NAME PORT\n"
                 "       mp-registry-fixture --registry DIR gone NAME\n"
                 "       mp-registry-fixture --registry DIR future NAME\n"
                 "       mp-registry-fixture --registry DIR schema-1 -\n"
                 "       mp-registry-fixture --registry DIR cluster-self NODE [connected|degraded]\n"
                 "       mp-registry-fixture --registry DIR cluster-tunnel NAME NODE A.B.C.D:PORT\n"
                 "       mp-registry-fixture --registry DIR cluster-gone NAME\n"
                 "       mp-registry-fixture --registry DIR cluster-node NODE A.B.C.D:PORT TUNNELS alive|dead\n"
                 "       mp-registry-fixture --registry DIR cluster-corrupt NAME\n"
                 "       mp-registry-fixture --registry DIR cluster-leave -\n");
    return 1;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

HttpEndpoint endpoint_arg(const std::string& text) {
    const auto e = monitoring_proxy::parse_ipv4_endpoint(text);
    if (!e) throw std::invalid_argument("\"" + text + "\" is not A.B.C.D:PORT");
    return HttpEndpoint{e->address, e->port};
}

// The declared env through LMDB directly: the registry API only writes valid records.
int write_future_target(const std::string& dir, const std::string& name) {
    monitoring_proxy::lmdb::Env env(dir, 0, 0, 8, 0640);
    monitoring_proxy::lmdb::Txn txn(env, 0);
    auto targets = txn.open_db(kDbTargets, 0);
    if (!targets || !txn.get(*targets, name)) {
        std::fprintf(stderr, "mp-registry-fixture: no target \"%s\"\n", name.c_str());
        return 2;
    }
    std::string value(1, static_cast<char>(kRecordVersion + 100));
    value += "fields of a future version";
    txn.put(*targets, name, value);
    txn.commit();
    return 0;
}

int make_schema_1(const std::string& dir) {
    monitoring_proxy::lmdb::Env env(dir, 0, 0, 8, 0640);
    monitoring_proxy::lmdb::Txn txn(env, 0);
    auto meta = txn.open_db(kDbMeta, 0);
    auto index = txn.open_db(kDbFixedPorts, 0);
    if (!meta || !index) return usage();
    monitoring_proxy::lmdb::check(mdb_drop(txn.get(), *index, 1), dir, "mdb_drop");
    txn.put(*meta, kMetaSchemaVersion, std::string("\x01\0\0\0", 4));
    txn.commit();
    return 0;
}

// A cluster tunnel value with trailing garbage, written past the writer API's validation.
int write_corrupt_cluster_tunnel(const std::string& dir, const std::string& name) {
    const std::string live = dir + "/" + kLiveSubdir;
    monitoring_proxy::lmdb::Env env(live, MDB_NOSYNC, 0, 8, 0640);
    monitoring_proxy::lmdb::Txn txn(env, 0);
    auto dbi = txn.open_db(kDbClusterTunnels, 0);
    if (!dbi) throw std::runtime_error(live + " has no " + kDbClusterTunnels + " database");
    ClusterTunnelRecord record{"corrupt", HttpEndpoint{0x7f000001, 9}, now_ms(), "SHA256:fixture", "127.0.0.1:1"};
    txn.put(*dbi, name, encode(record) + "trailing garbage");
    txn.commit();
    return 0;
}

int live_command(Registry& registry, const std::string& command, const Args& args) {
    const std::string& name = args[3];
    if (command == "live" && args.size() == 5) {
        const unsigned long port = std::stoul(args[4]);
        if (port == 0 || port > 65535) return usage();
        TunnelRecord record;
        record.port = static_cast<std::uint16_t>(port);
        record.instance = kFixtureInstance;
        record.connected_unix_ms = now_ms();
        record.client_address = "127.0.0.1:1";
        record.key_fingerprint = "SHA256:fixture";
        registry.update_live([&](LiveTxn& txn) { txn.put_tunnel(name, record); });
        return 0;
    }
    if (command == "gone" && args.size() == 4) {
        bool removed = false;
        registry.update_live([&](LiveTxn& txn) { removed = txn.remove_tunnel(name, kFixtureInstance); });
        if (!removed) {
            std::fprintf(stderr, "mp-registry-fixture: no fixture tunnel \"%s\"\n", name.c_str());
            return 2;
        }
        return 0;
    }
    return -1;
}

int cluster_command(Registry& registry, const std::string& command, const Args& args) {
    const std::string& name = args[3];
    if (command == "cluster-self" && (args.size() == 4 || args.size() == 5)) {
        const std::string state = args.size() == 5 ? args[4] : "connected";
        if (state != "connected" && state != "degraded") return usage();
        registry.set_cluster_state(ClusterStateRecord{
            name, state == "connected" ? EtcdState::kConnected : EtcdState::kDegraded, now_ms(), 1});
        return 0;
    }
    if (command == "cluster-tunnel" && args.size() == 6) {
        ClusterTunnelRecord record{args[4], endpoint_arg(args[5]), now_ms(), "SHA256:fixture", "127.0.0.1:1"};
        registry.update_cluster([&](ClusterTxn& txn) { txn.put_tunnel(name, record); });
        return 0;
    }
    if (command == "cluster-gone" && args.size() == 4) {
        registry.update_cluster([&](ClusterTxn& txn) { txn.remove_tunnel(name); });
        return 0;
    }
    if (command == "cluster-node" && args.size() == 7) {
        if (args[6] != "alive" && args[6] != "dead") return usage();
        ClusterNodeRecord record{endpoint_arg(args[4]), static_cast<std::uint32_t>(std::stoul(args[5])), now_ms(),
                                 args[6] == "alive"};
        registry.update_cluster([&](ClusterTxn& txn) { txn.put_node(name, record); });
        return 0;
    }
    if (command == "cluster-leave" && args.size() == 4) {
        registry.leave_cluster();
        return 0;
    }
    return -1;
}

}  // namespace

int main(int argc, char** argv) {
    Args args(argv + 1, argv + argc);
    if (args.size() < 4 || args[0] != "--registry") return usage();
    const std::string& command = args[2];
    try {
        OpenOptions options;
        options.dir = args[1];
        if (command == "future" && args.size() == 4) return write_future_target(options.dir, args[3]);
        if (command == "schema-1" && args.size() == 4) return make_schema_1(options.dir);
        if (command == "cluster-corrupt" && args.size() == 4) {
            Registry::open(options);  // creates the cluster databases if this registry predates them
            return write_corrupt_cluster_tunnel(options.dir, args[3]);
        }
        Registry registry = Registry::open(options);
        if (int rc = live_command(registry, command, args); rc >= 0) return rc;
        if (int rc = cluster_command(registry, command, args); rc >= 0) return rc;
        return usage();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mp-registry-fixture: %s\n", e.what());
        return 2;
    }
}
