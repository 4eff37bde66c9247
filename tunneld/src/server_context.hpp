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

#include "cluster/cluster_hooks.hpp"
#include "policy/authorized_keys.hpp"
#include "policy/enrolment.hpp"
#include "policy/forward_policy.hpp"
#include "monitoring_proxy/clock.hpp"
#include "monitoring_proxy/registry.hpp"
#include "options.hpp"
#include "policy/preauth_admission.hpp"
#include "forward/registry_gateway.hpp"
#include "forward/tunnel_table.hpp"

namespace tunneld {

class Worker;

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
    PreauthAdmission admission;  // connections not authenticated yet, per source address
    std::vector<std::unique_ptr<Worker>> workers;

    TunnelTable tunnels;  // which forward serves each target; addresses and ports set aside
    std::unique_ptr<ClusterHooks> cluster;  // --etcd only: live forwards published to the cluster

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

using monitoring_proxy::unix_now_ms;

}  // namespace tunneld
