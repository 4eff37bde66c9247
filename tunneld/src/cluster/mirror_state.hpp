// The pure part of the cluster mirror (cluster_mirror.hpp): what this node knows of the cluster's etcd contents,
// and how one etcd list or one watch batch changes it. No etcd, no LMDB, no clock: the mirror feeds it keys and
// values and writes what it returns into the local registry.
//
// Rules (README "Architecture", cluster mode):
// - Keys are read under the whole prefix. <prefix>v1/{targets,tunnels,nodes}/<name> are this layout's; keys under
//   <prefix>v<digits>/ of another layout version are ignored silently (an upgrade runs both side by side); any
//   other key is an error (logged by the caller) and ignored.
// - A value that does not decode (or names an unusable node id or HTTP endpoint) is an error naming its key; the
//   last good value of that key is kept (after a restart: the target the local registry already has), and no
//   other key is affected.
// - The view (registry ClusterView) holds the tunnels of OTHER nodes only (this node's are in its live env) and
//   every node, this one included; a node whose key is gone stays listed as not alive.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "monitoring_proxy/cluster_schema.hpp"
#include "monitoring_proxy/registry.hpp"

namespace tunneld {

// One key as etcd returned it (a list entry, or a watch event).
struct MirrorEvent {
    enum class Type { kPut, kDelete };
    Type type = Type::kPut;
    std::string key, value;
};

// What one list or batch changed.
struct MirrorChanges {
    // Declared targets to write (new or changed) and to remove, for the declared env's one transaction.
    std::map<std::string, monitoring_proxy::registry::TargetRecord> targets_put;
    std::set<std::string> targets_removed;
    // Names whose entry in the view's tunnels changed (put, replaced or removed): rewrite these.
    std::set<std::string> view_tunnels;
    // Names whose tunnel key another node now holds (a put seen in this batch, or every such key on a list):
    // the caller drops its own older forward of each.
    std::set<std::string> held_elsewhere;
    bool nodes_changed = false;
    // "etcd key <key>: why" for every key that could not be used (ClusterDecodeError::what()).
    std::vector<std::string> errors;
};

class MirrorState {
public:
    // An HTTP endpoint text (HOST:PORT, as --advertise-http) to the address nginx connects to; nullopt: unusable.
    using Resolve = std::function<std::optional<monitoring_proxy::registry::HttpEndpoint>(const std::string&)>;

    struct Tunnel {
        monitoring_proxy::cluster::ClusterTunnelValue value;
        monitoring_proxy::registry::HttpEndpoint http;
    };
    struct Node {
        monitoring_proxy::cluster::ClusterNodeValue value;
        monitoring_proxy::registry::HttpEndpoint http;
        bool alive = false;
        std::int64_t last_seen_unix_ms = 0;
    };

    MirrorState(std::string prefix, std::string self_node, Resolve resolve);

    // The last good declared targets before the first list (the local registry's): what a key that does not
    // decode in that list keeps.
    void seed_targets(std::map<std::string, monitoring_proxy::registry::TargetRecord> targets);

    // A full list of the prefix: afterwards the state is exactly what it holds (keys that do not decode keep
    // their last good value; keys absent from it are gone, nodes become not alive).
    MirrorChanges apply_list(const std::vector<MirrorEvent>& kvs, std::int64_t now_unix_ms);
    // One watch batch, in event order.
    MirrorChanges apply_events(const std::vector<MirrorEvent>& events, std::int64_t now_unix_ms);

    const std::map<std::string, monitoring_proxy::registry::TargetRecord>& targets() const { return targets_; }
    const std::map<std::string, Tunnel>& tunnels() const { return tunnels_; }  // every node's
    const std::map<std::string, Node>& nodes() const { return nodes_; }

    // The view's record of `name` (nullopt: no tunnel, or this node's own).
    std::optional<monitoring_proxy::registry::ClusterTunnelRecord> view_tunnel(const std::string& name) const;
    std::map<std::string, monitoring_proxy::registry::ClusterNodeRecord> view_nodes() const;
    monitoring_proxy::registry::ClusterView view() const;

private:
    void apply_one(const MirrorEvent& ev, std::int64_t now_unix_ms, MirrorChanges& out);
    void apply_put(const monitoring_proxy::cluster::ParsedKey& key, const MirrorEvent& ev, std::int64_t now_unix_ms,
                   MirrorChanges& out);
    void apply_delete(const monitoring_proxy::cluster::ParsedKey& key, std::int64_t now_unix_ms,
                      MirrorChanges& out);
    // nullopt: a key this node ignores (another layout version); throws ClusterDecodeError for a foreign one.
    std::optional<monitoring_proxy::cluster::ParsedKey> parse(const std::string& key) const;
    bool is_other(const std::string& name) const;  // a tunnel of another node is in the view

    std::string prefix_, self_;
    Resolve resolve_;
    std::map<std::string, monitoring_proxy::registry::TargetRecord> targets_;
    std::map<std::string, Tunnel> tunnels_;
    std::map<std::string, Node> nodes_;
};

// "a.b.c.d:port" only (no name resolution): the resolver tests and numeric --advertise-http use.
std::optional<monitoring_proxy::registry::HttpEndpoint> numeric_http_endpoint(const std::string& text);

}  // namespace tunneld
