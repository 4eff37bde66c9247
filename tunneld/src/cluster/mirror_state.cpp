#include "cluster/mirror_state.hpp"

#include <cctype>

#include "monitoring_proxy/address.hpp"

namespace tunneld {

namespace cl = monitoring_proxy::cluster;
namespace reg = monitoring_proxy::registry;

namespace {

// <prefix>v<digits>/...: a key of another layout version (not v1/).
bool other_layout_version(std::string_view prefix, std::string_view key) {
    if (key.substr(0, prefix.size()) != prefix) return false;
    std::string_view rest = key.substr(prefix.size());
    if (rest.size() < 3 || rest[0] != 'v') return false;
    std::size_t i = 1;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i;
    return i > 1 && i < rest.size() && rest[i] == '/' && rest.substr(0, i + 1) != cl::kLayoutVersion;
}

}  // namespace

std::optional<reg::HttpEndpoint> numeric_http_endpoint(const std::string& text) {
    auto e = monitoring_proxy::parse_ipv4_endpoint(text);
    if (!e || e->address == 0) return std::nullopt;
    return reg::HttpEndpoint{e->address, e->port};
}

MirrorState::MirrorState(std::string prefix, std::string self_node, Resolve resolve)
    : prefix_(cl::normalise_prefix(prefix)), self_(std::move(self_node)), resolve_(std::move(resolve)) {
    if (!resolve_) resolve_ = numeric_http_endpoint;
}

void MirrorState::seed_targets(std::map<std::string, reg::TargetRecord> targets) { targets_ = std::move(targets); }

std::optional<cl::ParsedKey> MirrorState::parse(const std::string& key) const {
    if (other_layout_version(prefix_, key)) return std::nullopt;
    return cl::parse_key(prefix_, key);
}

bool MirrorState::is_other(const std::string& name) const {
    auto it = tunnels_.find(name);
    return it != tunnels_.end() && it->second.value.node_id != self_;
}

namespace {

MirrorState::Tunnel decode_tunnel(const std::string& key, const std::string& value,
                                  const MirrorState::Resolve& resolve) {
    MirrorState::Tunnel t;
    t.value = cl::decode_tunnel_value(key, value);
    if (auto why = cl::node_id_problem(t.value.node_id)) throw cl::ClusterDecodeError(key, *why);
    auto http = resolve(t.value.http_endpoint);
    if (!http)
        throw cl::ClusterDecodeError(key, "http endpoint \"" + t.value.http_endpoint.substr(0, 128) +
                                              "\" is not a usable IPv4 HOST:PORT");
    t.http = *http;
    return t;
}

MirrorState::Node decode_node(const std::string& key, const std::string& value, const MirrorState::Resolve& resolve,
                              std::int64_t now) {
    MirrorState::Node n;
    n.value = cl::decode_node_value(key, value);
    auto http = resolve(n.value.http_endpoint);
    if (!http)
        throw cl::ClusterDecodeError(key, "http endpoint \"" + n.value.http_endpoint.substr(0, 128) +
                                              "\" is not a usable IPv4 HOST:PORT");
    n.http = *http;
    n.alive = true;
    n.last_seen_unix_ms = now;
    return n;
}

bool same_tunnel(const MirrorState::Tunnel& a, const MirrorState::Tunnel& b) {
    return a.value == b.value && a.http == b.http;
}

// After a list: the tunnels of other nodes that appeared, went or changed (the view to rewrite), and those other
// nodes hold now.
void diff_other_nodes_tunnels(const std::map<std::string, MirrorState::Tunnel>& before_list,
                              const std::map<std::string, MirrorState::Tunnel>& after_list, const std::string& self,
                              MirrorChanges& out) {
    using Tunnel = MirrorState::Tunnel;
    auto other_in = [&](const std::map<std::string, Tunnel>& m, const std::string& name) -> const Tunnel* {
        auto it = m.find(name);
        return it != m.end() && it->second.value.node_id != self ? &it->second : nullptr;
    };
    std::set<std::string> names;
    for (const auto& [name, t] : before_list) names.insert(name);
    for (const auto& [name, t] : after_list) names.insert(name);
    for (const auto& name : names) {
        const Tunnel* before = other_in(before_list, name);
        const Tunnel* after = other_in(after_list, name);
        if ((before == nullptr) != (after == nullptr) || (before && !same_tunnel(*before, *after)))
            out.view_tunnels.insert(name);
        if (after) out.held_elsewhere.insert(name);
    }
}

}  // namespace

MirrorChanges MirrorState::apply_list(const std::vector<MirrorEvent>& kvs, std::int64_t now) {
    MirrorChanges out;
    auto prev_targets = std::move(targets_);
    auto prev_tunnels = std::move(tunnels_);
    auto prev_nodes = std::move(nodes_);
    targets_.clear();
    tunnels_.clear();
    nodes_.clear();
    for (const auto& kv : kvs) {
        std::optional<cl::ParsedKey> key;
        try {
            key = parse(kv.key);
            if (!key) continue;
            switch (key->kind) {
            case cl::KeyKind::kTarget: targets_[key->name] = cl::decode_target_value(kv.key, kv.value); break;
            case cl::KeyKind::kTunnel: tunnels_[key->name] = decode_tunnel(kv.key, kv.value, resolve_); break;
            case cl::KeyKind::kNode: nodes_[key->name] = decode_node(kv.key, kv.value, resolve_, now); break;
            }
        } catch (const cl::ClusterDecodeError& e) {
            out.errors.push_back(e.what());
            if (!key) continue;  // a foreign key: nothing to keep
            // Keep the last good value of this key.
            if (key->kind == cl::KeyKind::kTarget) {
                if (auto it = prev_targets.find(key->name); it != prev_targets.end()) targets_.insert(*it);
            } else if (key->kind == cl::KeyKind::kTunnel) {
                if (auto it = prev_tunnels.find(key->name); it != prev_tunnels.end()) tunnels_.insert(*it);
            } else if (auto it = prev_nodes.find(key->name); it != prev_nodes.end()) {
                nodes_.insert(*it);
            }
        }
    }
    for (auto& [id, node] : prev_nodes) {
        if (nodes_.count(id)) continue;
        node.alive = false;  // its lease is gone; still listed, with when it was last seen
        nodes_.emplace(id, std::move(node));
    }

    for (const auto& [name, t] : targets_) {
        auto it = prev_targets.find(name);
        if (it == prev_targets.end() || !(it->second == t)) out.targets_put[name] = t;
    }
    for (const auto& [name, t] : prev_targets)
        if (!targets_.count(name)) out.targets_removed.insert(name);

    diff_other_nodes_tunnels(prev_tunnels, tunnels_, self_, out);
    out.nodes_changed = true;
    return out;
}

MirrorChanges MirrorState::apply_events(const std::vector<MirrorEvent>& events, std::int64_t now) {
    MirrorChanges out;
    std::set<std::string> tunnel_puts;
    for (const auto& ev : events) {
        std::optional<cl::ParsedKey> key;
        try {
            key = parse(ev.key);
        } catch (const cl::ClusterDecodeError& e) {
            out.errors.push_back(e.what());
            continue;
        }
        if (!key) continue;
        if (ev.type == MirrorEvent::Type::kDelete) {
            apply_delete(*key, now, out);
            continue;
        }
        try {
            apply_put(*key, ev, now, out);
            if (key->kind == cl::KeyKind::kTunnel) tunnel_puts.insert(key->name);
        } catch (const cl::ClusterDecodeError& e) {
            out.errors.push_back(e.what());  // the last good value of this key stays
        }
    }
    for (const auto& name : tunnel_puts)
        if (is_other(name)) out.held_elsewhere.insert(name);
    return out;
}

void MirrorState::apply_put(const cl::ParsedKey& key, const MirrorEvent& ev, std::int64_t now, MirrorChanges& out) {
    switch (key.kind) {
    case cl::KeyKind::kTarget: {
        auto record = cl::decode_target_value(ev.key, ev.value);
        auto it = targets_.find(key.name);
        if (it != targets_.end() && it->second == record) return;
        targets_[key.name] = record;
        out.targets_put[key.name] = std::move(record);
        out.targets_removed.erase(key.name);
        return;
    }
    case cl::KeyKind::kTunnel: {
        Tunnel t = decode_tunnel(ev.key, ev.value, resolve_);
        const bool was_other = is_other(key.name);
        tunnels_[key.name] = std::move(t);
        if (was_other || is_other(key.name)) out.view_tunnels.insert(key.name);
        out.nodes_changed = true;  // tunnels_held
        return;
    }
    case cl::KeyKind::kNode:
        nodes_[key.name] = decode_node(ev.key, ev.value, resolve_, now);
        out.nodes_changed = true;
        return;
    }
}

void MirrorState::apply_delete(const cl::ParsedKey& key, std::int64_t now, MirrorChanges& out) {
    switch (key.kind) {
    case cl::KeyKind::kTarget:
        if (targets_.erase(key.name) == 0) return;
        out.targets_put.erase(key.name);
        out.targets_removed.insert(key.name);
        return;
    case cl::KeyKind::kTunnel:
        if (is_other(key.name)) out.view_tunnels.insert(key.name);
        if (tunnels_.erase(key.name)) out.nodes_changed = true;
        return;
    case cl::KeyKind::kNode:
        if (auto it = nodes_.find(key.name); it != nodes_.end() && it->second.alive) {
            it->second.alive = false;  // lease gone (expired, revoked): listed as not alive
            it->second.last_seen_unix_ms = now;
            out.nodes_changed = true;
        }
        return;
    }
}

std::optional<reg::ClusterTunnelRecord> MirrorState::view_tunnel(const std::string& name) const {
    auto it = tunnels_.find(name);
    if (it == tunnels_.end() || it->second.value.node_id == self_) return std::nullopt;
    const auto& v = it->second.value;
    return reg::ClusterTunnelRecord{v.node_id, it->second.http, v.connected_unix_ms, v.key_fingerprint,
                                    v.client_address};
}

std::map<std::string, reg::ClusterNodeRecord> MirrorState::view_nodes() const {
    std::map<std::string, std::uint32_t> held;
    for (const auto& [name, t] : tunnels_) ++held[t.value.node_id];
    std::map<std::string, reg::ClusterNodeRecord> out;
    for (const auto& [id, n] : nodes_) {
        auto h = held.find(id);
        out[id] = reg::ClusterNodeRecord{n.http, h == held.end() ? 0u : h->second, n.last_seen_unix_ms, n.alive};
    }
    return out;
}

reg::ClusterView MirrorState::view() const {
    reg::ClusterView v;
    for (const auto& [name, t] : tunnels_)
        if (auto r = view_tunnel(name)) v.tunnels.emplace(name, std::move(*r));
    v.nodes = view_nodes();
    return v;
}

}  // namespace tunneld
