// The cluster view in the live environment (registry_schema.hpp): written by tunneld's etcd mirror, read by the
// module through reader.hpp.
#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/names.hpp"
#include "monitoring_proxy/registry.hpp"
#include "listing.hpp"

namespace monitoring_proxy::registry {
namespace {

void check_endpoint(const HttpEndpoint& e, std::string_view what) {
    if (e.address == 0 || e.port == 0)
        throw RefusedChange(std::string(what) + ": http endpoint needs a non-zero IPv4 address and port");
}

void check_node(std::string_view id) {
    if (auto e = check_node_id(id); !e.empty()) throw RefusedChange(e);
}

}  // namespace

// ---- ClusterTxn -----------------------------------------------------------------------------------------------

void ClusterTxn::put_tunnel(std::string_view name, const ClusterTunnelRecord& record) {
    if (auto e = check_target_name(name); !e.empty()) throw RefusedChange(e);
    check_node(record.node_id);
    check_endpoint(record.http, "cluster tunnel " + std::string(name));
    txn_.put(tunnels_, name, encode(record));
}

bool ClusterTxn::remove_tunnel(std::string_view name) { return txn_.del(tunnels_, name); }

void ClusterTxn::put_node(std::string_view id, const ClusterNodeRecord& record) {
    check_node(id);
    check_endpoint(record.http, "cluster node " + std::string(id));
    txn_.put(nodes_, id, encode(record));
}

bool ClusterTxn::remove_node(std::string_view id) { return txn_.del(nodes_, id); }

void ClusterTxn::set_state(const ClusterStateRecord& state) {
    check_node(state.node_id);
    txn_.put(meta_, kMetaCluster, encode(state));
}

bool ClusterTxn::remove_state() { return txn_.del(meta_, kMetaCluster); }

std::optional<ClusterTunnelRecord> ClusterTxn::get_tunnel(std::string_view name) {
    auto v = txn_.get(tunnels_, name);
    if (!v) return std::nullopt;
    return decode_cluster_tunnel(*v);
}

std::optional<ClusterStateRecord> ClusterTxn::state() {
    auto v = txn_.get(meta_, kMetaCluster);
    if (!v) return std::nullopt;
    return decode_cluster_state(*v);
}

void ClusterTxn::clear_view() {
    lmdb::check(mdb_drop(txn_.get(), tunnels_, 0), txn_.path(), "cannot empty cluster_tunnels");
    lmdb::check(mdb_drop(txn_.get(), nodes_, 0), txn_.path(), "cannot empty cluster_nodes");
}

// ---- Registry -------------------------------------------------------------------------------------------------

void Registry::update_cluster(const std::function<void(ClusterTxn&)>& fn) {
    if (!live_ || !cluster_tunnels_ || !cluster_nodes_)
        throw RegistryError("registry " + dir_ + " was opened without writable live state");
    lmdb::Txn txn(live_, 0);
    ClusterTxn c(txn, live_meta_, *cluster_tunnels_, *cluster_nodes_);
    fn(c);
    txn.commit();
}

void Registry::replace_cluster_view(const ClusterView& view, const ClusterStateRecord& state) {
    update_cluster([&](ClusterTxn& txn) {
        txn.clear_view();
        for (const auto& [name, record] : view.tunnels) txn.put_tunnel(name, record);
        for (const auto& [id, record] : view.nodes) txn.put_node(id, record);
        txn.set_state(state);
    });
}

void Registry::set_cluster_state(const ClusterStateRecord& state) {
    update_cluster([&](ClusterTxn& txn) { txn.set_state(state); });
}

void Registry::leave_cluster() {
    update_cluster([](ClusterTxn& txn) {
        txn.clear_view();
        txn.remove_state();
    });
}

std::optional<ClusterStateRecord> Registry::cluster_state() {
    if (!live_) return std::nullopt;
    lmdb::Txn txn(live_, MDB_RDONLY);
    auto v = txn.get(live_meta_, kMetaCluster);
    if (!v) return std::nullopt;
    return decode_cluster_state(*v);
}

std::optional<ClusterTunnelRecord> Registry::get_cluster_tunnel(std::string_view name) {
    if (!live_ || !cluster_tunnels_) return std::nullopt;
    lmdb::Txn txn(live_, MDB_RDONLY);
    auto v = txn.get(*cluster_tunnels_, name);
    if (!v) return std::nullopt;
    return decode_cluster_tunnel(*v);
}

ClusterView Registry::cluster_view() {
    ClusterView view;
    if (!live_ || !cluster_tunnels_ || !cluster_nodes_) return view;
    lmdb::Txn txn(live_, MDB_RDONLY);
    view.tunnels = detail::collect_records(txn, *cluster_tunnels_, decode_cluster_tunnel, "cluster tunnel");
    view.nodes = detail::collect_records(txn, *cluster_nodes_, decode_cluster_node, "cluster node");
    return view;
}

}  // namespace monitoring_proxy::registry
