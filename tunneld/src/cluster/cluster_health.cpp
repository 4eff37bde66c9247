#include "cluster/cluster_health.hpp"

#include "log.hpp"
#include "monitoring_proxy/clock.hpp"

namespace tunneld {

namespace reg = monitoring_proxy::registry;

ClusterHealth::ClusterHealth(RegistryGateway& registry, std::string node_id)
    : registry_(registry), node_id_(std::move(node_id)) {}

void ClusterHealth::starting() {
    std::lock_guard lock(mu_);
    mirror_down_ = true;  // not listed yet
    write_state_locked(false);
}

void ClusterHealth::degraded(Part part, const std::string& reason) {
    std::lock_guard lock(mu_);
    (part == Part::kLease ? lease_down_ : mirror_down_) = true;
    if (!outage_logged_) {
        outage_logged_ = true;
        log_line("cluster degraded reason=" + log_quote(reason));
    }
    if (recorded_up_) write_state_locked(false);
}

void ClusterHealth::connected(Part part) {
    std::lock_guard lock(mu_);
    (part == Part::kLease ? lease_down_ : mirror_down_) = false;
    if (lease_down_ || mirror_down_) return;
    if (outage_logged_) {
        outage_logged_ = false;
        log_line("cluster reconnected node=" + node_id_);
    }
    if (!recorded_up_) write_state_locked(true);
}

void ClusterHealth::stopped() {
    std::lock_guard lock(mu_);
    write_state_locked(false);
}

// Keeps the applied revision the mirror wrote; only the connection state and its time change.
void ClusterHealth::write_state_locked(bool up) noexcept {
    recorded_up_ = up;
    try {
        registry_.with([&](reg::Registry& r) {
            r.update_cluster([&](reg::ClusterTxn& txn) {
                reg::ClusterStateRecord s = txn.state().value_or(reg::ClusterStateRecord{});
                s.node_id = node_id_;
                s.etcd = up ? reg::EtcdState::kConnected : reg::EtcdState::kDegraded;
                s.etcd_since_unix_ms = monitoring_proxy::unix_now_ms();
                txn.set_state(s);
            });
            return 0;
        });
    } catch (const std::exception& e) {
        log_line(std::string("cluster error writing the cluster state to the registry: ") + e.what());
    }
}

}  // namespace tunneld
