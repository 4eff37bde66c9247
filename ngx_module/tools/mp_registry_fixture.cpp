// Test-only: puts live tunnel records into a registry without tunneld, so end-to-end tests of the nginx module
// can point a target at any local port.
//
//   mp-registry-fixture --registry DIR live NAME PORT   record a live tunnel NAME -> 127.0.0.1:PORT
//   mp-registry-fixture --registry DIR gone NAME        remove it
//   mp-registry-fixture --registry DIR future NAME      rewrite target NAME's record as an unknown (newer)
//                                                       record version, as a newer tunnelctl might write it
//   mp-registry-fixture --registry DIR schema-1 -       make the declared environment look as schema version 1
//                                                       wrote it (no fixed_ports index), to test migrate
//
// New files get the group from $MONITORING_PROXY_REGISTRY_GROUP (nginx workers must open lock.mdb).
#include "monitoring_proxy/registry.hpp"

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

// Owner of the fixture's records; tunneld instances use other ids, and nothing here sweeps.
constexpr std::uint64_t kFixtureInstance = 0xf1c7;

int usage() {
    std::fprintf(stderr,
                 "usage: mp-registry-fixture --registry DIR live NAME PORT\n"
                 "       mp-registry-fixture --registry DIR gone NAME\n"
                 "       mp-registry-fixture --registry DIR future NAME\n"
                 "       mp-registry-fixture --registry DIR schema-1 -\n");
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace monitoring_proxy::registry;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() < 4 || args[0] != "--registry") return usage();
    const std::string& command = args[2];
    const std::string& name = args[3];
    try {
        OpenOptions options;
        options.dir = args[1];
        if (command == "future" && args.size() == 4) {
            // The declared env through LMDB directly: the registry API only writes valid records.
            monitoring_proxy::lmdb::Env env(options.dir, 0, 0, 8, 0640);
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
        if (command == "schema-1" && args.size() == 4) {
            monitoring_proxy::lmdb::Env env(options.dir, 0, 0, 8, 0640);
            monitoring_proxy::lmdb::Txn txn(env, 0);
            auto meta = txn.open_db(kDbMeta, 0);
            auto index = txn.open_db(kDbFixedPorts, 0);
            if (!meta || !index) return usage();
            monitoring_proxy::lmdb::check(mdb_drop(txn.get(), *index, 1), options.dir, "mdb_drop");
            txn.put(*meta, kMetaSchemaVersion, std::string("\x01\0\0\0", 4));
            txn.commit();
            return 0;
        }
        Registry registry = Registry::open(options);
        if (command == "live" && args.size() == 5) {
            const unsigned long port = std::stoul(args[4]);
            if (port == 0 || port > 65535) return usage();
            TunnelRecord record;
            record.port = static_cast<std::uint16_t>(port);
            record.instance = kFixtureInstance;
            record.connected_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count();
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
        return usage();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mp-registry-fixture: %s\n", e.what());
        return 2;
    }
}
