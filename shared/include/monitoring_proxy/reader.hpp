// The nginx module's view of the registry: opened once per worker (init_process), one lookup per request with
// no allocation, read transactions reused through mdb_txn_reset/mdb_txn_renew. The Reader also knows whether it
// still reads the registry's files (freshness()), so its user never names an LMDB file.
#pragma once

#include "monitoring_proxy/file_watch.hpp"
#include "monitoring_proxy/lmdb.hpp"
#include "monitoring_proxy/registry.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
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

enum class Freshness {
    kCurrent,    // reading the files the registry directory holds now
    kTruncated,  // a data file shrank in place: the next read past its end would raise SIGBUS
    kReplaced,   // the directory now holds other files (restored, rebuilt), or the live one appeared
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
    // Throws LmdbError when the registry cannot be read, DecodeError when this target's record cannot be
    // decoded (the reader stays usable for every other target). Allocates nothing.
    Resolved resolve(std::string_view name, std::string_view path);

    // Anything other than kCurrent: close this reader and open a new one. Costs two fstat calls; the
    // replacement check (two stat calls) runs at most once per kReplacementCheckInterval.
    Freshness freshness() noexcept;
    static constexpr std::chrono::milliseconds kReplacementCheckInterval{1000};

    // Everything at once, for discovery, metrics and the status page (allocates; not for the proxy path).
    std::vector<SnapshotEntry> snapshot();
    std::map<std::string, std::uint64_t> counters();
    // Join tokens' records (never a secret: only its hash is stored), for the status page.
    std::map<std::string, InviteRecord> invites();

    const std::string& dir() const noexcept { return dir_; }

private:
    // Renews a reused read txn, handling MDB_MAP_RESIZED (a writer grew the map) by adopting the new size.
    void begin(lmdb::Env& env, lmdb::Txn& txn);
    // Opens DIR/live once it exists; false while it does not.
    bool open_live();
    std::string dir_;
    FileWatch declared_file_, live_file_;  // watched from before the environments are opened
    std::chrono::steady_clock::time_point next_replacement_check_;
    lmdb::Env declared_, live_;
    lmdb::Txn declared_txn_, live_txn_;
    MDB_dbi targets_{}, tunnels_{}, counters_{};
    std::optional<MDB_dbi> invites_;  // absent while no writer of this version has opened the registry
    bool have_live_ = false;
};

}  // namespace monitoring_proxy::registry
