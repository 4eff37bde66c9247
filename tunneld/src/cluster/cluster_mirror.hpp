// The cluster mirror: keeps this node's local registry a copy of the cluster's etcd contents, so that nginx (and
// tunneld's own forward decisions) read them from LMDB, never from etcd. On its own thread (no etcd call on a
// worker):
//   list   range of the whole prefix at revision R; the declared targets written into the declared env in ONE
//          transaction (changed ones put, vanished ones removed), the cluster view (other nodes' tunnels, every
//          node) and the state record (applied revision R) into the live env in one transaction;
//   watch  from R+1, each batch applied the same way (one transaction per env);
//   after  any end of the watch: list again (a compacted revision is logged as such). A list that fails marks
//          the node degraded (ClusterHealth) after a short grace, keeps the last view and targets (never emptied
//          on an outage) and is retried with backoff.
// A tunnel key that another node puts with a session at least as new as this node's forward of that name ends
// that forward (reason=taken_over_by_node), through the worker's mailbox; a target removed from etcd ends its
// forward here too (reason=target_removed).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cluster/cluster_health.hpp"
#include "cluster/cluster_node.hpp"
#include "cluster/mirror_state.hpp"

namespace monitoring_proxy::etcd {
class Client;
class Watch;
struct RangeResult;
struct WatchBatch;
}  // namespace monitoring_proxy::etcd

namespace tunneld {

struct ServerContext;

class ClusterMirror {
public:
    ClusterMirror(ServerContext& ctx, ClusterHealth& health, const ClusterConfig& config);
    ~ClusterMirror();  // stops and joins
    ClusterMirror(const ClusterMirror&) = delete;
    ClusterMirror& operator=(const ClusterMirror&) = delete;

    // The first list, on the caller's thread, so that a node starts with the cluster's targets; false (nothing
    // changed) when etcd did not answer: the thread retries.
    bool list_now();
    void start();
    void stop() noexcept;

private:
    // What the thread does next: list the prefix (again), watch from revision_ + 1, or end.
    enum class Next { kList, kWatch, kStop };
    // A failing list's retry state: backoff, and since when it fails (degraded after a grace period).
    struct ListRetry {
        std::chrono::milliseconds backoff;
        std::optional<std::chrono::steady_clock::time_point> failing_since;
    };
    void run() noexcept;
    Next list_step(ListRetry& retry) noexcept;  // kWatch once listed; kList after a failure (backoff slept)
    Next watch_step() noexcept;                 // runs one watch until it ends; what that end calls for
    void apply_list(const monitoring_proxy::etcd::RangeResult& range);
    void apply_batch(const monitoring_proxy::etcd::WatchBatch& batch);
    void write_declared(const MirrorChanges& changes, bool full);
    void write_view(const MirrorChanges& changes, bool full, std::int64_t revision);
    void end_local_forwards(const MirrorChanges& changes);
    void end_forward(const std::string& name, const std::string& reason, const std::string& detail,
                     std::optional<std::int64_t> older_than_ms);
    void log_errors(const MirrorChanges& changes);
    bool sleep_for(std::chrono::milliseconds d);  // false when stopping
    std::optional<monitoring_proxy::registry::HttpEndpoint> resolve(const std::string& text);

    ServerContext& ctx_;
    ClusterHealth& health_;
    std::unique_ptr<monitoring_proxy::etcd::Client> make_client() const;

    const std::string prefix_, node_id_;
    const ClusterConfig config_;
    std::unique_ptr<monitoring_proxy::etcd::Client> client_;
    MirrorState state_;
    std::int64_t revision_ = 0;  // the last applied etcd revision
    std::map<std::string, std::optional<monitoring_proxy::registry::HttpEndpoint>> resolved_;

    std::mutex mu_;
    std::condition_variable wake_;
    bool stop_ = false;
    monitoring_proxy::etcd::Watch* watch_ = nullptr;  // the current watch, for stop() to cancel
    std::thread thread_;
};

}  // namespace tunneld
