// Cluster mode's parts, started in order and stopped in reverse: the health record, the mirror's first list (so a
// node that starts knows the cluster's targets and tunnels before it logs `cluster connected` and accepts
// forwards), the node lease, then the mirror's watch thread.
#include "cluster/cluster_health.hpp"
#include "cluster/cluster_hooks.hpp"
#include "cluster/cluster_mirror.hpp"
#include "cluster/cluster_node.hpp"
#include "server_context.hpp"

namespace tunneld {

namespace {

class ClusterMember : public ClusterHooks {
public:
    ClusterMember(ServerContext& ctx, const ClusterConfig& config)
        : health_(ctx.registry, config.node_id), mirror_(ctx, health_, config), node_(config, health_) {}
    ~ClusterMember() override { mirror_.stop(); }  // members then go in reverse: node (revokes), mirror, health

    void start() {
        mirror_.list_now();  // false: etcd does not answer; the thread keeps trying
        node_.start();
        mirror_.start();
    }
    void publish(const std::string& target, monitoring_proxy::cluster::ClusterTunnelValue value) override {
        node_.publish(target, std::move(value));
    }
    void withdraw(const std::string& target, std::uint64_t session) override { node_.withdraw(target, session); }

private:
    ClusterHealth health_;
    ClusterMirror mirror_;
    ClusterNode node_;
};

}  // namespace

std::unique_ptr<ClusterHooks> start_cluster(ServerContext& ctx) {
    const Options& o = ctx.options;
    if (o.etcd.empty()) return nullptr;
    auto member = std::make_unique<ClusterMember>(
        ctx, ClusterConfig{o.etcd, o.etcd_prefix, o.etcd_cacert, o.etcd_cert, o.etcd_key, o.node_id, o.advertise_http,
                           o.lease_ttl});
    member->start();
    return member;
}

}  // namespace tunneld
