#include "cluster_node.hpp"

#include <chrono>

#include "../log.hpp"
#include "monitoring_proxy/etcd_client.hpp"

namespace tunneld {

namespace cl = monitoring_proxy::cluster;
namespace et = monitoring_proxy::etcd;

namespace {
constexpr int kCasAttempts = 5;
std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}
}  // namespace

ClusterNode::ClusterNode(ClusterConfig config, ClusterHealth& health) : config_(std::move(config)), health_(health) {
    config_.prefix = cl::normalise_prefix(config_.prefix);
    client_ = std::make_unique<et::Client>(et::ClientOptions{et::parse_endpoints(config_.endpoints),
                                                             {config_.cacert, config_.cert, config_.key},
                                                             std::chrono::milliseconds(2000)});
}

ClusterNode::~ClusterNode() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void ClusterNode::start() {
    if (!connect()) degraded_ = true;  // serve anyway; reconciled when etcd answers
    else health_.connected(ClusterHealth::Part::kLease);
    thread_ = std::thread([this] { run(); });
}

void ClusterNode::publish(const std::string& target, cl::ClusterTunnelValue value) {
    value.node_id = config_.node_id;
    value.http_endpoint = config_.advertise_http;
    {
        std::lock_guard lock(mu_);
        queue_.push_back({true, target, std::move(value)});
    }
    wake_.notify_all();
}

void ClusterNode::withdraw(const std::string& target, std::uint64_t session) {
    Request r{false, target, {}};
    r.value.session = session;
    {
        std::lock_guard lock(mu_);
        queue_.push_back(std::move(r));
    }
    wake_.notify_all();
}

// A new lease every time (never resurrect one that may have expired), the node key on it, the old lease revoked
// so nothing of the last connection lingers.
bool ClusterNode::connect() {
    try {
        const auto old = lease_;
        lease_ = client_->lease_grant(config_.lease_ttl);
        cl::ClusterNodeValue node{config_.advertise_http, wall_ms(), lease_};
        client_->put(cl::key_of(config_.prefix, cl::KeyKind::kNode, config_.node_id), cl::encode(node), lease_);
        if (old != 0) {
            try {
                client_->lease_revoke(old);
            } catch (const et::EtcdError&) {
            }
        }
        log_line("cluster connected etcd=" + client_->current_endpoint() + " node=" + config_.node_id +
                 " lease=" + std::to_string(lease_));
        return true;
    } catch (const et::EtcdError& e) {
        health_.degraded(ClusterHealth::Part::kLease, e.what());
        return false;
    }
}

void ClusterNode::run() noexcept {
    const auto interval = std::chrono::milliseconds(config_.lease_ttl * 1000 / 3);
    auto next_keepalive = std::chrono::steady_clock::now() + interval;
    for (;;) {
        std::deque<Request> batch;
        {
            std::unique_lock lock(mu_);
            wake_.wait_until(lock, next_keepalive, [&] { return stop_ || !queue_.empty(); });
            if (stop_) break;
            batch.swap(queue_);
        }
        for (const auto& r : batch) handle(r);
        if (std::chrono::steady_clock::now() < next_keepalive) continue;
        next_keepalive = std::chrono::steady_clock::now() + interval;
        try {
            if (degraded_) {
                // Fresh channels: gRPC channels that failed through a whole outage can stay failing after etcd is
                // back (seen with etcd 3.4 members restarted together).
                client_ = std::make_unique<et::Client>(et::ClientOptions{et::parse_endpoints(config_.endpoints),
                                                                         {config_.cacert, config_.cert, config_.key},
                                                                         std::chrono::milliseconds(2000)});
                if (!connect()) continue;
                degraded_ = false;
                republish_all();
                if (!degraded_) health_.connected(ClusterHealth::Part::kLease);  // logs `cluster reconnected`
            } else {
                client_->lease_keep_alive(lease_);
            }
        } catch (const et::LeaseExpired&) {
            log_line("cluster lease expired lease=" + std::to_string(lease_) + "; republishing under a new lease");
            if (connect()) republish_all(); else degraded_ = true;
        } catch (const std::exception& e) {
            health_.degraded(ClusterHealth::Part::kLease, e.what());
            degraded_ = true;
        }
    }
    try {
        if (lease_ != 0 && !degraded_) client_->lease_revoke(lease_);  // our keys go at once, not after the TTL
    } catch (const std::exception& e) {
        log_line(std::string("cluster: lease not revoked at shutdown: ") + e.what());
    }
}

void ClusterNode::handle(const Request& r) {
    if (r.publish) {
        held_[r.target] = {r.value.session, 0, r.value};
        if (!degraded_) put_tunnel(r.target, r.value);
        return;
    }
    auto it = held_.find(r.target);
    if (it == held_.end() || it->second.session != r.value.session) return;  // a newer session holds it now
    if (!degraded_) delete_tunnel(r.target);
    held_.erase(r.target);  // while degraded: the key goes with the old lease on reconnect
}

// Compare-and-swap on the mod_revision read: two nodes racing for a name cannot both win, and the newest session
// wins over an older one (a stale key of a dead node included: its session is older).
void ClusterNode::put_tunnel(const std::string& target, const cl::ClusterTunnelValue& value) {
    const std::string key = cl::key_of(config_.prefix, cl::KeyKind::kTunnel, target);
    try {
        for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
            auto current = client_->get(key);
            std::optional<cl::ClusterTunnelValue> other;
            if (current) {
                try {
                    other = cl::decode_tunnel_value(key, current->value);
                } catch (const cl::ClusterDecodeError& e) {
                    log_line("cluster error " + std::string(e.what()) + "; replacing it");
                }
            }
            if (other && other->node_id != config_.node_id && other->connected_unix_ms > value.connected_unix_ms) {
                log_line("cluster publish skipped target=" + target + " reason=newer_session node=" + other->node_id);
                return;
            }
            auto cmp = current ? et::Compare::mod_revision(key, current->mod_revision) : et::Compare::absent(key);
            auto result = client_->txn({cmp}, {et::Op::put(key, cl::encode(value), lease_)});
            if (!result.succeeded) continue;  // someone wrote it meanwhile: read again
            held_[target].mod_revision = result.revision;
            if (other && other->node_id != config_.node_id)
                log_line("takeover target=" + target + " from_node=" + other->node_id + " node=" + config_.node_id);
            return;
        }
        log_line("cluster publish failed target=" + target + " reason=\"key kept changing\"");
    } catch (const std::exception& e) {
        health_.degraded(ClusterHealth::Part::kLease, std::string("publishing ") + key + ": " + e.what());
        degraded_ = true;
    }
}

// Deletes only our own write: a newer session's key (another node took over) stays.
void ClusterNode::delete_tunnel(const std::string& target) {
    const std::string key = cl::key_of(config_.prefix, cl::KeyKind::kTunnel, target);
    const auto& held = held_[target];
    if (held.mod_revision == 0) return;
    try {
        client_->txn({et::Compare::mod_revision(key, held.mod_revision)}, {et::Op::remove(key)});
    } catch (const std::exception& e) {
        health_.degraded(ClusterHealth::Part::kLease, std::string("withdrawing ") + key + ": " + e.what());
        degraded_ = true;
    }
}

void ClusterNode::republish_all() {
    for (auto& [target, held] : held_) {
        held.mod_revision = 0;
        put_tunnel(target, held.value);
    }
}

}  // namespace tunneld
