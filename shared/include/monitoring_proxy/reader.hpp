// The nginx module's view of the registry: opened once per worker (init_process), one lookup per request with
// no allocation, read transactions reused through mdb_txn_reset/mdb_txn_renew.
#pragma once

#include "monitoring_proxy/lmdb.hpp"
#include "monitoring_proxy/registry.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace monitoring_proxy::registry {

enum class Resolution {
    kLive,            // connect to address:port
    kUnknown,         // no such target (404)
    kNotConnected,    // declared, no live tunnel (503)
    kPathForbidden,   // path outside the target's allowed prefixes (403)
};

struct Resolved {
    Resolution status = Resolution::kUnknown;
    std::uint32_t address = kLoopbackAddress;  // the live forward's own loopback address, host byte order
    std::uint16_t port = 0;
};

class Reader {
public:
    // Opens DIR and DIR/live read-only and clears stale reader slots. Throws LmdbError / RegistryError.
    explicit Reader(const std::string& dir);
    Reader(const Reader&) = delete;  // reused txns point into this object's environments
    Reader& operator=(const Reader&) = delete;

    // `name` must already be valid (valid_target_name); `path` is the part after /<name>, starting with '/'.
    // Throws LmdbError when the registry cannot be read. Allocates nothing.
    Resolved resolve(std::string_view name, std::string_view path);

    // Everything at once, for discovery, metrics and the status page (allocates; not for the proxy path).
    std::vector<SnapshotEntry> snapshot();
    std::map<std::string, std::uint64_t> counters();

    const std::string& dir() const noexcept { return dir_; }

private:
    // Renews a reused read txn, handling MDB_MAP_RESIZED (a writer grew the map) by adopting the new size.
    void begin(lmdb::Env& env, lmdb::Txn& txn);
    // Opens DIR/live once it exists; false while it does not.
    bool open_live();
    std::string dir_;
    lmdb::Env declared_, live_;
    lmdb::Txn declared_txn_, live_txn_;
    MDB_dbi targets_{}, tunnels_{}, counters_{};
    bool have_live_ = false;
};

}  // namespace monitoring_proxy::registry
