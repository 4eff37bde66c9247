// A build without cluster support (MP_CLUSTER=OFF): --etcd is refused at start.
#include <stdexcept>

#include "cluster_hooks.hpp"
#include "server_context.hpp"

namespace tunneld {

std::unique_ptr<ClusterHooks> start_cluster(ServerContext& ctx) {
    if (ctx.options.etcd.empty()) return nullptr;
    throw std::runtime_error("--etcd: this tunneld was built without cluster support (-DMP_CLUSTER=OFF)");
}

}  // namespace tunneld
