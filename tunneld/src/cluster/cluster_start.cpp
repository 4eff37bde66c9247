#include "cluster_hooks.hpp"
#include "cluster_node.hpp"
#include "../options.hpp"

namespace tunneld {

std::unique_ptr<ClusterHooks> start_cluster(const Options& o) {
    if (o.etcd.empty()) return nullptr;
    auto node = std::make_unique<ClusterNode>(ClusterConfig{o.etcd, o.etcd_prefix, o.etcd_cacert, o.etcd_cert,
                                                            o.etcd_key, o.node_id, o.advertise_http, o.lease_ttl});
    node->start();
    return node;
}

}  // namespace tunneld
