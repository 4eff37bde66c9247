#include "etcd_commands.hpp"

#include <iostream>
#include <sstream>
#include <map>
#include <optional>

#include "monitoring_proxy/cluster_schema.hpp"
#include "monitoring_proxy/json.hpp"
#include "monitoring_proxy/codec.hpp"
#ifdef MP_CLUSTER
#include "monitoring_proxy/etcd_client.hpp"
#endif
#include <cstdlib>
#include <filesystem>

namespace monitoring_proxy::tunnelctl {

#ifndef MP_CLUSTER
int run_on_etcd(const EtcdOptions&, const std::string&, Handler, bool, Args) {
    std::cerr << "tunnelctl: --etcd: this tunnelctl was built without cluster support (-DMP_CLUSTER=OFF)\n";
    return kExitUsage;
}
#else
namespace {

namespace cl = monitoring_proxy::cluster;
namespace et = monitoring_proxy::etcd;
using registry::TargetRecord;

constexpr int kAttempts = 5;

// The scratch registry a command runs on, removed when done.
struct ScratchDir {
    std::string path;
    ScratchDir() {
        char tmpl[] = "/tmp/tunnelctl-etcd-XXXXXX";
        if (!::mkdtemp(tmpl)) throw registry::RegistryError("cannot create a scratch directory in /tmp");
        path = tmpl;
    }
    ~ScratchDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
};

struct ReadTargets {
    std::map<std::string, TargetRecord> targets;
    // Target keys with a valid name whose value does not decode: `ls` lists those with a live tunnel; other
    // commands leave them as they are in etcd.
    std::map<std::string, std::string> undecodable;  // name -> why
    std::int64_t revision = 0;
};

ReadTargets read_targets(et::Client& client, const std::string& prefix) {
    ReadTargets out;
    auto range = client.range_prefix(cl::kind_prefix(prefix, cl::KeyKind::kTarget));
    out.revision = range.revision;
    for (const auto& kv : range.kvs) {
        std::optional<cl::ParsedKey> key;
        try {
            key = cl::parse_key(prefix, kv.key);
            out.targets[key->name] = cl::decode_target_value(kv.key, kv.value);
        } catch (const cl::ClusterDecodeError& e) {
            std::cerr << "tunnelctl: skipped: " << e.what() << "\n";  // left as it is in etcd
            if (key) out.undecodable[key->name] = e.what();
        }
    }
    return out;
}

std::map<std::string, TargetRecord> local_targets(registry::Registry& reg) {
    std::map<std::string, TargetRecord> out;
    for (auto& e : reg.snapshot())
        if (e.target) out[e.name] = *e.target;
    return out;
}

int ls(et::Client& client, const std::string& prefix, Args& args) {
    bool json = false;
    while (!args.empty()) {
        auto a = args.next();
        if (a != "--json") throw UsageError("ls: unknown argument \"" + a + "\"");
        json = true;
    }
    auto read = read_targets(client, prefix);
    std::map<std::string, cl::ClusterTunnelValue> tunnels;
    for (const auto& kv : client.range_prefix(cl::kind_prefix(prefix, cl::KeyKind::kTunnel), read.revision).kvs) {
        try {
            tunnels[cl::parse_key(prefix, kv.key).name] = cl::decode_tunnel_value(kv.key, kv.value);
        } catch (const cl::ClusterDecodeError& e) {
            std::cerr << "tunnelctl: skipped: " << e.what() << "\n";
        }
    }
    std::string out = json ? "[" : "NAME                 PORT   PROXY            CLIENT                 LABELS\n";
    std::map<std::string, const TargetRecord*> rows;  // nullptr: the value does not decode
    for (const auto& [name, t] : read.targets) rows[name] = &t;
    // A target whose value does not decode is listed only while a proxy holds its tunnel (who holds it is still
    // known, and the proxies keep serving the last good value); otherwise it is only the error on stderr.
    for (const auto& [name, why] : read.undecodable)
        if (tunnels.count(name)) rows.emplace(name, nullptr);
    const TargetRecord none;
    bool first = true;
    for (const auto& [name, record] : rows) {
        const TargetRecord& t = record ? *record : none;
        auto it = tunnels.find(name);
        const cl::ClusterTunnelValue* tun = it == tunnels.end() ? nullptr : &it->second;
        std::string labels;
        for (const auto& [k, v] : t.labels) labels += (labels.empty() ? "" : ",") + k + "=" + v;
        if (!record) labels = "(its value in etcd does not decode)";
        if (json) {
            out += first ? "" : ",";
            // "state" as in single-node `ls --json` (connected / disconnected), here cluster-wide.
            out += "{\"name\":" + json::quote(name) + ",\"state\":\"" + (tun ? "connected" : "disconnected") +
                   "\",\"port\":" + std::to_string(t.fixed_port) +
                   ",\"connected\":" + (tun ? "true" : "false") + ",\"node\":" +
                   (tun ? json::quote(tun->node_id) : "null") + ",\"client\":" +
                   (tun ? json::quote(tun->client_address) : "null") + ",\"labels\":{";
            bool lf = true;
            for (const auto& [k, v] : t.labels) {
                out += (lf ? "" : ",") + json::quote(k) + ":" + json::quote(v);
                lf = false;
            }
            out += "}";
            if (!record) out += ",\"error\":" + json::quote(read.undecodable[name]);
            out += "}";
        } else {
            auto pad = [](std::string s, std::size_t n) { return s.size() >= n ? s + " " : s + std::string(n - s.size(), ' '); };
            out += pad(name, 21) + pad(t.fixed_port ? std::to_string(t.fixed_port) : "-", 7) +
                   pad(tun ? tun->node_id : "-", 17) + pad(tun ? tun->client_address : "-", 23) + labels + "\n";
        }
        first = false;
    }
    std::cout << out << (json ? "]\n" : "");
    return kExitOk;
}

// etcd's --max-txn-ops (128 unless configured): a change of more operations is refused whole.
[[noreturn]] void refuse_oversized(const et::EtcdError& e, std::size_t ops) {
    throw registry::RefusedChange(
        "etcd refused the change as one transaction of " + std::to_string(ops) + " operations (" + e.what() +
        "): nothing was written. Raise the members' max-txn-ops (etcd's default is 128; docker/etcd/etcd.conf.yml "
        "sets 10240), or split the change (an import-targets file in parts)");
}

// Holds back what the command prints until its change is in etcd: a write that fails (or a lost race that is
// run again) must not leave "added ..." on the terminal.
class HeldOutput {
public:
    HeldOutput() : saved_(std::cout.rdbuf(held_.rdbuf())) {}
    ~HeldOutput() { std::cout.rdbuf(saved_); }
    HeldOutput(const HeldOutput&) = delete;
    HeldOutput& operator=(const HeldOutput&) = delete;
    void release() {
        std::cout.rdbuf(saved_);
        std::cout << held_.str();
        held_.str({});
    }

private:
    std::ostringstream held_;
    std::streambuf* saved_;
};

// One attempt: run the command on a scratch copy, write back what changed if nothing changed meanwhile.
std::optional<int> attempt(et::Client& client, const std::string& prefix, Handler handler, bool read_only,
                           Args args) {
    HeldOutput output;
    auto read = read_targets(client, prefix);
    ScratchDir scratch;
    registry::OpenOptions o;
    o.dir = scratch.path;
    o.live = false;
    auto reg = registry::Registry::open(o);
    if (!read.targets.empty())
        reg.update_declared([&](registry::DeclaredTxn& txn) {
            for (const auto& [name, t] : read.targets) txn.put(name, t);
        });
    const int status = handler(reg, args);
    if (read_only || status != kExitOk) {
        output.release();
        return status;
    }
    const auto after = local_targets(reg);
    std::vector<et::Op> ops;
    for (const auto& [name, t] : after) {
        auto before = read.targets.find(name);
        if (before == read.targets.end() || !(before->second == t))
            ops.push_back(et::Op::put(cl::key_of(prefix, cl::KeyKind::kTarget, name), registry::encode(t)));
    }
    for (const auto& [name, t] : read.targets)
        if (!after.count(name)) ops.push_back(et::Op::remove(cl::key_of(prefix, cl::KeyKind::kTarget, name)));
    const std::string targets = cl::kind_prefix(prefix, cl::KeyKind::kTarget);
    if (!ops.empty()) {
        try {
            auto result =
                client.txn({et::Compare::unchanged_since(targets, read.revision, et::prefix_end(targets))}, ops);
            if (!result.succeeded) return std::nullopt;
        } catch (const et::EtcdError& e) {
            if (std::string_view(e.what()).find("too many operations in txn request") != std::string_view::npos)
                refuse_oversized(e, ops.size());
            throw;
        }
    }
    output.release();
    return status;
}

}  // namespace

int run_on_etcd(const EtcdOptions& etcd, const std::string& command, Handler handler, bool read_only, Args args) {
    if (command == "invite" || command == "invites" || command == "init" || command == "migrate" ||
        command == "counters") {
        std::cerr << "tunnelctl: `" << command << "` works on one node's registry: run it without --etcd"
                  << (command.rfind("invite", 0) == 0 ? " (join tokens are not supported in cluster mode yet)" : "")
                  << "\n";
        return kExitUsage;
    }
    et::ClientOptions options{et::parse_endpoints(etcd.endpoints), {etcd.cacert, etcd.cert, etcd.key},
                              std::chrono::milliseconds(3000)};
    et::Client client(std::move(options));
    const std::string prefix = cl::normalise_prefix(etcd.prefix);
    if (command == "ls") return ls(client, prefix, args);
    for (int i = 0; i < kAttempts; ++i) {
        // A lost race (rare: a concurrent tunnelctl) runs the command again; its held-back output is dropped.
        if (auto status = attempt(client, prefix, handler, read_only, args)) return *status;
        std::cerr << "tunnelctl: the cluster's targets changed meanwhile; trying again\n";
    }
    throw registry::RefusedChange("the cluster's targets kept changing under " + std::to_string(kAttempts) +
                                  " attempts; nothing was written");
}
#endif

}  // namespace monitoring_proxy::tunnelctl
