// The nginx module's view of the registry: opened once per worker (init_process), one lookup per request with
// no allocation, read transactions reused through mdb_txn_reset/mdb_txn_renew. The Reader also knows whether it
// still reads the registry's files (freshness()), so its user never names an LMDB file.
#pragma once

#include "monitoring_proxy/file_watch.hpp"
#include "monitoring_proxy/lmdb.hpp"
#include "monitoring_proxy/names.hpp"
#include "monitoring_proxy/registry.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <algorithm>

namespace monitoring_proxy::registry {

enum class Resolution {
    kLive,            // connect to address:port
    kUnknown,         // no such target (404)
    kNotConnected,    // declared, no live tunnel (503)
    kPathForbidden,   // path outside the target's allowed prefixes (403)
    kCluster,         // no local tunnel; another node of the cluster holds it: hop to address:port
};

// A node id copied out of the registry without allocating (ids are at most kMaxNodeIdLength bytes).
class NodeIdText {
public:
    void assign(std::string_view id) noexcept {
        size_ = static_cast<std::uint8_t>(std::min(id.size(), bytes_.size()));
        std::copy_n(id.data(), size_, bytes_.data());
    }
    std::string_view view() const noexcept { return {bytes_.data(), size_}; }

private:
    std::array<char, kMaxNodeIdLength> bytes_{};
    std::uint8_t size_ = 0;
};

enum class Freshness {
    kCurrent,    // reading the files the registry directory holds now
    kTruncated,  // a data file shrank in place: the next read past its end would raise SIGBUS
    kReplaced,   // the directory now holds other files (restored, rebuilt), or the live one appeared
};

struct Resolved {
    Resolution status = Resolution::kUnknown;
    // kLive: the live forward's own loopback address; kCluster: the holding node's nginx. Host byte order.
    std::uint32_t address = kLoopbackAddress;
    std::uint16_t port = 0;
    NodeIdText holder;  // kCluster: the node holding the tunnel
    NodeIdText self;    // kCluster: this node's id (cluster state record); empty if there is none
};

class Reader {
public:
    // Opens DIR and DIR/live read-only and clears stale reader slots. Throws LmdbError / RegistryError.
    explicit Reader(const std::string& dir);
    Reader(const Reader&) = delete;  // reused txns point into this object's environments
    Reader& operator=(const Reader&) = delete;

    // `name` must already be valid (valid_target_name); `path` is the part after /<name>, starting with '/'.
    // Throws LmdbError when the registry cannot be read, DecodeError when this target's record cannot be
    // decoded (the reader stays usable for every other target). Allocates nothing.
    // A local tunnel wins over a cluster one.
    Resolved resolve(std::string_view name, std::string_view path);

    // Anything other than kCurrent: close this reader and open a new one. Costs two fstat calls; the
    // replacement check (two stat calls) runs at most once per kReplacementCheckInterval.
    Freshness freshness() noexcept;
    static constexpr std::chrono::milliseconds kReplacementCheckInterval{1000};

    // Everything at once, for discovery, metrics and the status page (allocates; not for the proxy path). A
    // record that does not decode throws DecodeError, or, given `unreadable`, is skipped and listed there.
    std::vector<SnapshotEntry> snapshot(std::vector<UnreadableRecord>* unreadable = nullptr);
    std::map<std::string, std::uint64_t> counters();
    // Join tokens' records (never a secret: only its hash is stored), for the status page.
    std::map<std::string, InviteRecord> invites(std::vector<UnreadableRecord>* unreadable = nullptr);
    // The cluster view (nullopt / empty in single-node mode), for the pages.
    std::optional<ClusterStateRecord> cluster_state();
    std::optional<ClusterTunnelRecord> cluster_tunnel(std::string_view name);
    std::map<std::string, ClusterTunnelRecord> cluster_tunnels(std::vector<UnreadableRecord>* unreadable = nullptr);
    std::map<std::string, ClusterNodeRecord> cluster_nodes(std::vector<UnreadableRecord>* unreadable = nullptr);

    const std::string& dir() const noexcept { return dir_; }

private:
    // Renews a reused read txn, handling MDB_MAP_RESIZED (a writer grew the map) by adopting the new size.
    void begin(lmdb::Env& env, lmdb::Txn& txn);
    // Opens DIR/live once it exists; false while it does not.
    bool open_live();
    // The cluster databases' handles once a writer has created them (checked at most once per interval).
    bool open_cluster();
    // kCluster into `out` if another node holds `name` (live_txn_ is active).
    void resolve_cluster(std::string_view name, Resolved& out);
    std::string dir_;
    FileWatch declared_file_, live_file_;  // watched from before the environments are opened
    std::chrono::steady_clock::time_point next_replacement_check_;
    lmdb::Env declared_, live_;
    lmdb::Txn declared_txn_, live_txn_;
    MDB_dbi targets_{}, tunnels_{}, counters_{}, live_meta_{};
    std::optional<MDB_dbi> cluster_tunnels_, cluster_nodes_;  // absent in a registry no cluster writer opened
    std::chrono::steady_clock::time_point next_cluster_check_;
    std::optional<MDB_dbi> invites_;  // absent while no writer of this version has opened the registry
    bool have_live_ = false;
};

}  // namespace monitoring_proxy::registry
