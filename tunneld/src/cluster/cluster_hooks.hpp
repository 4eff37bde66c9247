// What the rest of tunneld sees of cluster mode: publish a live forward, withdraw it. Null without --etcd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "monitoring_proxy/cluster_schema.hpp"

namespace tunneld {

struct ServerContext;

class ClusterHooks {
public:
    virtual ~ClusterHooks() = default;
    virtual void publish(const std::string& target, monitoring_proxy::cluster::ClusterTunnelValue value) = 0;
    virtual void withdraw(const std::string& target, std::uint64_t session) = 0;
};

// nullptr without --etcd. Otherwise this node's lease and publication (cluster_node.hpp) and its mirror of etcd
// into the registry (cluster_mirror.hpp), started; the mirror ends forwards through ctx's workers, so the result
// must be destroyed before them. Throws std::runtime_error for a build without cluster support (MP_CLUSTER=OFF).
std::unique_ptr<ClusterHooks> start_cluster(ServerContext& ctx);

}  // namespace tunneld
