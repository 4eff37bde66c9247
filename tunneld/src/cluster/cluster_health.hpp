// Is this node in touch with etcd? Two parts of cluster mode find out: the node lease (cluster_node) and the
// mirror (cluster_mirror). An outage starts when either fails and ends when both work again; it is logged once
// (`cluster degraded reason=...`, `cluster reconnected node=...`) however many calls fail meanwhile, and written
// into the registry's cluster state record (the module's monitoring_proxy_cluster_etcd_up and /-/status).
// Thread-safe. Lock order: this object's mutex, then the registry gateway's.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "forward/registry_gateway.hpp"

namespace tunneld {

class ClusterHealth {
public:
    enum class Part { kLease, kMirror };

    ClusterHealth(RegistryGateway& registry, std::string node_id);

    // The part failed to reach etcd (`reason` for the log line that starts an outage).
    void degraded(Part part, const std::string& reason);
    // The part works again; when no part fails any more the outage is over.
    void connected(Part part);
    // Until the mirror's first list the view is the one from before this process: recorded as degraded, not logged.
    void starting();
    // tunneld stops: nothing keeps the view current any more.
    void stopped();

private:
    void write_state_locked(bool up) noexcept;

    RegistryGateway& registry_;
    const std::string node_id_;
    std::mutex mu_;
    bool lease_down_ = false, mirror_down_ = false;
    bool outage_logged_ = false;  // "cluster degraded" written for the current outage
    bool recorded_up_ = false;
};

}  // namespace tunneld
