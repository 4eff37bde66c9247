// tunneld's membership in a cluster (--etcd): one etcd lease for this node (TTL --lease-ttl, kept alive every
// TTL/3), the node key on it, and every live forward published as a tunnel key on it by compare-and-swap. Runs
// on its own thread; workers only queue publish/withdraw requests (no etcd call on a worker). Without --etcd
// none of this exists and nothing contacts etcd.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/cluster_health.hpp"
#include "cluster_hooks.hpp"
#include "monitoring_proxy/cluster_schema.hpp"

namespace monitoring_proxy::etcd {
class Client;
}

namespace tunneld {

struct ClusterConfig {
    std::string endpoints, prefix, cacert, cert, key;
    std::string node_id, advertise_http;
    unsigned lease_ttl = 10;
};

class ClusterNode : public ClusterHooks {
public:
    ClusterNode(ClusterConfig config, ClusterHealth& health);
    ~ClusterNode() override;  // revokes the lease (its keys go with it) and joins the thread
    ClusterNode(const ClusterNode&) = delete;
    ClusterNode& operator=(const ClusterNode&) = delete;

    void start();
    // Any thread. `session` tells this node's forwards of one name apart (the forward id).
    void publish(const std::string& target, monitoring_proxy::cluster::ClusterTunnelValue value) override;
    void withdraw(const std::string& target, std::uint64_t session) override;

private:
    struct Request {
        bool publish = true;
        std::string target;
        monitoring_proxy::cluster::ClusterTunnelValue value;
    };
    struct Held {
        std::uint64_t session = 0;
        std::int64_t mod_revision = 0;  // of our own write: withdraw deletes only that
        monitoring_proxy::cluster::ClusterTunnelValue value;
    };
    void run() noexcept;
    bool connect();  // lease + node key; false (logged once per outage) when etcd does not answer
    void handle(const Request& r);
    void put_tunnel(const std::string& target, const monitoring_proxy::cluster::ClusterTunnelValue& value);
    void delete_tunnel(const std::string& target);
    void republish_all();

    ClusterConfig config_;
    ClusterHealth& health_;
    std::unique_ptr<monitoring_proxy::etcd::Client> client_;
    std::int64_t lease_ = 0;
    bool degraded_ = false;
    std::map<std::string, Held> held_;  // thread-owned

    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<Request> queue_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace tunneld
