// State shared by the acceptor, the workers and the main thread: options, the registry (behind one mutex), the
// table of live tunnels this instance owns, counters, the current authorized_keys.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "authorized_keys.hpp"
#include "enrolment.hpp"
#include "forward_policy.hpp"
#include "monitoring_proxy/registry.hpp"
#include "options.hpp"
#include "loopback_addresses.hpp"
#include "port_allocator.hpp"

namespace tunneld {

class Worker;

// Registry access from several threads: every call takes the mutex (LMDB write txns are serialised anyway and
// the Registry object itself is not documented as thread-safe).
class RegistryGateway {
public:
    explicit RegistryGateway(monitoring_proxy::registry::Registry registry) : registry_(std::move(registry)) {}
    template <typename Fn>
    auto with(Fn&& fn) {
        std::lock_guard lock(mu_);
        return fn(registry_);
    }

private:
    std::mutex mu_;
    monitoring_proxy::registry::Registry registry_;
};

// Counter deltas accumulated in memory and flushed to the registry about once a second by the main thread, so
// no registry write sits on the relay path.
class Counters {
public:
    // `label_value` for the counters that take one (registry_schema.hpp, kTunneldCounters).
    void add(monitoring_proxy::registry::TunneldCounter counter, std::string_view label_value = {},
             std::uint64_t delta = 1);
    void flush(RegistryGateway& registry) noexcept;

private:
    std::mutex mu_;
    std::map<std::string, std::uint64_t> pending_;
};

// Who serves a live tunnel in this process.
struct TunnelOwner {
    Worker* worker = nullptr;
    std::uint64_t session_id = 0;
    std::uint64_t forward_id = 0;
    std::uint32_t address = 0;
    std::uint16_t port = 0;
    std::string client;
};

struct KeyVerdict {
    bool accepted = false;
    std::string reason;   // counter label when refused: unknown_key, from_mismatch, user
    std::string message;  // for the log
    std::string source;   // "registry" or "authorized_keys:FILE:LINE"
    KeyGrant grant;
};

struct ServerContext {
    explicit ServerContext(Options opts, monitoring_proxy::registry::Registry registry);
    ~ServerContext();

    Options options;
    std::uint64_t instance_id = 0;
    RegistryGateway registry;
    Counters counters;
    std::atomic<int> unauthenticated{0};
    std::vector<std::unique_ptr<Worker>> workers;

    // Live tunnels: guarded by tunnels_mu, which is also held while binding and recording a forward so that
    // "port free? bind, record" is atomic across workers. Lock order: tunnels_mu, then the registry mutex.
    std::mutex tunnels_mu;
    std::map<std::string, TunnelOwner> tunnels;
    std::map<std::string, std::uint16_t> last_port;  // previous port of each target: reconnects keep their port
    PortAllocator allocator;
    LoopbackAddresses addresses;

    // authorized_keys, replaced wholesale on SIGHUP.
    void load_authorized_keys();
    std::shared_ptr<const AuthorizedKeys> authorized_keys() const;

    KeyVerdict evaluate_key(const std::string& user, const std::string& blob_base64, const std::string& fingerprint,
                            const std::string& client_ip);

    // Join-token attempts per client address (enrolment.hpp): 5 at once, then one every 12 seconds.
    std::mutex enrol_mu;
    AttemptLimiter enrol_attempts{5, std::chrono::seconds(12), 4096};

private:
    mutable std::mutex keys_mu_;
    std::shared_ptr<const AuthorizedKeys> authorized_keys_;
};

std::int64_t now_unix_ms();

}  // namespace tunneld
