// What the rest of tunneld sees of cluster mode: publish a live forward, withdraw it. Null without --etcd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "monitoring_proxy/cluster_schema.hpp"

namespace tunneld {

struct Options;

class ClusterHooks {
public:
    virtual ~ClusterHooks() = default;
    virtual void publish(const std::string& target, monitoring_proxy::cluster::ClusterTunnelValue value) = 0;
    virtual void withdraw(const std::string& target, std::uint64_t session) = 0;
};

// nullptr without --etcd. Throws std::runtime_error for a build without cluster support (MP_CLUSTER=OFF).
std::unique_ptr<ClusterHooks> start_cluster(const Options& options);

}  // namespace tunneld
