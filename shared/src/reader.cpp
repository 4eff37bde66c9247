#include "monitoring_proxy/reader.hpp"

#include "monitoring_proxy/codec.hpp"
#include "listing.hpp"

#include <cerrno>

namespace monitoring_proxy::registry {
namespace {

// Resets a reused read txn when a lookup ends, however it ends.
struct ResetOnExit {
    lmdb::Txn& txn;
    ~ResetOnExit() { txn.reset(); }
};

lmdb::Env open_read_only(const std::string& path) { return lmdb::Env(path, MDB_RDONLY, 0, 8, 0640); }

}  // namespace

Reader::Reader(const std::string& dir)
    : dir_(dir),
      declared_file_(dir + "/" + lmdb::kDataFile),
      live_file_(dir + "/" + kLiveSubdir + "/" + lmdb::kDataFile),
      next_replacement_check_(std::chrono::steady_clock::now() + kReplacementCheckInterval) {
    declared_ = open_read_only(dir);
    declared_.reader_check();  // slots left by killed workers
    lmdb::Txn txn(declared_, MDB_RDONLY);
    auto meta = txn.open_db(kDbMeta);
    auto targets = txn.open_db(kDbTargets);
    if (!meta || !targets)
        throw RegistryError("registry " + dir + " is empty or not a monitoring-proxy registry; create it with "
                            "tunnelctl or tunneld");
    detail::check_schema(txn, *meta, *targets, false, dir);
    targets_ = *targets;
    invites_ = txn.open_db(kDbInvites);
    txn.commit();
    declared_txn_ = lmdb::Txn(declared_, MDB_RDONLY);
    declared_txn_.reset();
}

Freshness Reader::freshness() noexcept {
    if (declared_file_.shrunk() || live_file_.shrunk()) return Freshness::kTruncated;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_replacement_check_) return Freshness::kCurrent;
    next_replacement_check_ = now + kReplacementCheckInterval;
    if (declared_file_.replaced() || live_file_.replaced()) return Freshness::kReplaced;
    return Freshness::kCurrent;
}

void Reader::begin(lmdb::Env& env, lmdb::Txn& txn) {
    int rc = txn.renew();
    if (rc == MDB_MAP_RESIZED) {
        // A writer grew the map since this process mapped it: adopt the new size, then renew again.
        lmdb::check(mdb_env_set_mapsize(env.get(), 0), env.path(), "cannot adopt the grown map size");
        rc = txn.renew();
    }
    lmdb::check(rc, env.path(), "cannot renew read transaction");
}

bool Reader::open_live() {
    if (have_live_) return true;
    // tunneld may create the live environment after nginx started: try again on demand.
    const std::string live_dir = dir_ + "/" + kLiveSubdir;
    lmdb::Env env;
    try {
        env = open_read_only(live_dir);
    } catch (const lmdb::LmdbError& e) {
        if (e.code() == ENOENT) return false;
        throw;
    }
    env.reader_check();
    lmdb::Txn txn(env, MDB_RDONLY);
    auto meta = txn.open_db(kDbMeta);
    auto tunnels = txn.open_db(kDbTunnels);
    auto counters = txn.open_db(kDbCounters);
    if (!meta || !tunnels || !counters) return false;  // being created right now
    detail::check_schema(txn, *meta, *tunnels, false, live_dir);
    tunnels_ = *tunnels, counters_ = *counters, live_meta_ = *meta;
    cluster_tunnels_ = txn.open_db(kDbClusterTunnels);
    cluster_nodes_ = txn.open_db(kDbClusterNodes);
    txn.commit();
    next_cluster_check_ = std::chrono::steady_clock::now() + kReplacementCheckInterval;
    live_ = std::move(env);
    live_txn_ = lmdb::Txn(live_, MDB_RDONLY);
    live_txn_.reset();
    have_live_ = true;
    return true;
}

Resolved Reader::resolve(std::string_view name, std::string_view path) {
    Resolved out;
    {
        begin(declared_, declared_txn_);
        ResetOnExit reset{declared_txn_};
        auto target = declared_txn_.get(targets_, name);
        if (!target) return out;  // kUnknown
        if (!target_allows_path(*target, path)) {
            out.status = Resolution::kPathForbidden;
            return out;
        }
    }
    out.status = Resolution::kNotConnected;
    if (!open_live()) return out;
    begin(live_, live_txn_);
    ResetOnExit reset{live_txn_};
    if (auto tunnel = live_txn_.get(tunnels_, name)) {
        const TunnelEndpoint endpoint = tunnel_endpoint(*tunnel);
        out.status = Resolution::kLive;
        out.address = endpoint.address;
        out.port = endpoint.port;
        return out;
    }
    resolve_cluster(name, out);
    return out;
}

bool Reader::open_cluster() {
    if (cluster_tunnels_ && cluster_nodes_) return true;
    // A newer tunneld may add the databases to a live environment this reader opened before: look again, rarely.
    const auto now = std::chrono::steady_clock::now();
    if (now < next_cluster_check_) return false;
    next_cluster_check_ = now + kReplacementCheckInterval;
    lmdb::Txn txn(live_, MDB_RDONLY);
    cluster_tunnels_ = txn.open_db(kDbClusterTunnels);
    cluster_nodes_ = txn.open_db(kDbClusterNodes);
    txn.commit();  // a read txn's commit keeps the handles it opened
    return cluster_tunnels_ && cluster_nodes_;
}

void Reader::resolve_cluster(std::string_view name, Resolved& out) {
    if (!open_cluster()) return;
    auto record = live_txn_.get(*cluster_tunnels_, name);
    if (!record) return;
    const ClusterHop hop = cluster_hop(*record);
    out.status = Resolution::kCluster;
    out.address = hop.http.address;
    out.port = hop.http.port;
    out.holder.assign(hop.node_id);
    if (auto state = live_txn_.get(live_meta_, kMetaCluster)) out.self.assign(cluster_self_id(*state));
}

std::optional<ClusterStateRecord> Reader::cluster_state() {
    if (!open_live()) return std::nullopt;
    begin(live_, live_txn_);
    ResetOnExit reset{live_txn_};
    auto v = live_txn_.get(live_meta_, kMetaCluster);
    if (!v) return std::nullopt;
    return decode_cluster_state(*v);
}

std::optional<ClusterTunnelRecord> Reader::cluster_tunnel(std::string_view name) {
    if (!open_live() || !open_cluster()) return std::nullopt;
    begin(live_, live_txn_);
    ResetOnExit reset{live_txn_};
    auto v = live_txn_.get(*cluster_tunnels_, name);
    if (!v) return std::nullopt;
    return decode_cluster_tunnel(*v);
}

std::map<std::string, ClusterTunnelRecord> Reader::cluster_tunnels(std::vector<UnreadableRecord>* unreadable) {
    if (!open_live() || !open_cluster()) return {};
    begin(live_, live_txn_);
    ResetOnExit reset{live_txn_};
    return detail::collect_records(live_txn_, *cluster_tunnels_, decode_cluster_tunnel, "cluster tunnel", unreadable);
}

std::map<std::string, ClusterNodeRecord> Reader::cluster_nodes(std::vector<UnreadableRecord>* unreadable) {
    if (!open_live() || !open_cluster()) return {};
    begin(live_, live_txn_);
    ResetOnExit reset{live_txn_};
    return detail::collect_records(live_txn_, *cluster_nodes_, decode_cluster_node, "cluster node", unreadable);
}

std::vector<SnapshotEntry> Reader::snapshot(std::vector<UnreadableRecord>* unreadable) {
    std::map<std::string, SnapshotEntry> by_name;
    {
        begin(declared_, declared_txn_);
        ResetOnExit reset{declared_txn_};
        detail::collect_targets(declared_txn_, targets_, by_name, unreadable);
    }
    if (open_live()) {
        begin(live_, live_txn_);
        ResetOnExit reset{live_txn_};
        detail::collect_tunnels(live_txn_, tunnels_, by_name, unreadable);
    }
    return detail::to_sorted_vector(std::move(by_name));
}

std::map<std::string, InviteRecord> Reader::invites(std::vector<UnreadableRecord>* unreadable) {
    if (!invites_) return {};
    begin(declared_, declared_txn_);
    ResetOnExit reset{declared_txn_};
    return detail::collect_records(declared_txn_, *invites_, decode_invite, "invitation", unreadable);
}

std::map<std::string, std::uint64_t> Reader::counters() {
    if (!open_live()) return {};
    begin(live_, live_txn_);
    ResetOnExit reset{live_txn_};
    return detail::collect_counters(live_txn_, counters_);
}

}  // namespace monitoring_proxy::registry
