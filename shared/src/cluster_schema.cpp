#include "monitoring_proxy/cluster_schema.hpp"

#include "field_codec.hpp"
#include "monitoring_proxy/names.hpp"

namespace monitoring_proxy::cluster {
namespace {

const char* kind_dir(KeyKind kind) {
    switch (kind) {
    case KeyKind::kTarget: return "targets/";
    case KeyKind::kTunnel: return "tunnels/";
    case KeyKind::kNode: return "nodes/";
    }
    return "";
}

// Runs a decoder, turning its DecodeError into one that names the etcd key.
template <class Fn>
auto naming_key(std::string_view key, Fn&& fn) {
    try {
        return fn();
    } catch (const ClusterDecodeError&) {
        throw;
    } catch (const registry::DecodeError& e) {
        throw ClusterDecodeError(std::string(key), e.what());
    }
}

}  // namespace

std::string normalise_prefix(std::string_view prefix) {
    if (prefix.empty()) throw std::invalid_argument("--etcd-prefix must not be empty");
    std::string p(prefix);
    if (p.back() != '/') p.push_back('/');
    return p;
}

std::string root(std::string_view prefix) { return std::string(prefix) + kLayoutVersion; }

std::string kind_prefix(std::string_view prefix, KeyKind kind) { return root(prefix) + kind_dir(kind); }

std::string key_of(std::string_view prefix, KeyKind kind, std::string_view name) {
    return kind_prefix(prefix, kind) + std::string(name);
}

ParsedKey parse_key(std::string_view prefix, std::string_view key) {
    const std::string base = root(prefix);
    if (key.substr(0, base.size()) != base)
        throw ClusterDecodeError(std::string(key), "not under " + base + " (another layout version?)");
    std::string_view rest = key.substr(base.size());
    for (KeyKind kind : {KeyKind::kTarget, KeyKind::kTunnel, KeyKind::kNode}) {
        std::string_view dir = kind_dir(kind);
        if (rest.substr(0, dir.size()) != dir) continue;
        std::string_view name = rest.substr(dir.size());
        if (!valid_target_name(name))
            throw ClusterDecodeError(std::string(key), std::string("name is not ") + kTargetNameRule);
        return {kind, std::string(name)};
    }
    throw ClusterDecodeError(std::string(key), "unknown kind of key (expected targets/, tunnels/ or nodes/)");
}

std::optional<std::string> node_id_problem(std::string_view id) {
    if (valid_target_name(id)) return std::nullopt;
    return std::string("node id \"") + std::string(id) + "\" is not " + kTargetNameRule;
}

std::string encode(const ClusterTunnelValue& v) {
    registry::Writer w(kTunnelValueVersion);
    w.string(v.node_id);
    w.string(v.http_endpoint);
    w.integer<std::int64_t>(v.connected_unix_ms);
    w.string(v.key_fingerprint);
    w.string(v.client_address);
    w.integer<std::uint64_t>(v.session);
    return w.take();
}

std::string encode(const ClusterNodeValue& v) {
    registry::Writer w(kNodeValueVersion);
    w.string(v.http_endpoint);
    w.integer<std::int64_t>(v.started_unix_ms);
    w.integer<std::int64_t>(v.lease);
    return w.take();
}

registry::TargetRecord decode_target_value(std::string_view key, std::string_view bytes) {
    return naming_key(key, [&] { return registry::decode_target(bytes); });
}

ClusterTunnelValue decode_tunnel_value(std::string_view key, std::string_view bytes) {
    return naming_key(key, [&] {
        registry::FieldReader r(bytes, "cluster tunnel", kTunnelValueVersion, kTunnelValueVersion);
        ClusterTunnelValue v;
        v.node_id = r.string("node_id");
        v.http_endpoint = r.string("http_endpoint");
        v.connected_unix_ms = r.integer<std::int64_t>("connected_unix_ms");
        v.key_fingerprint = r.string("key_fingerprint");
        v.client_address = r.string("client_address");
        v.session = r.integer<std::uint64_t>("session");
        r.end();
        if (auto why = node_id_problem(v.node_id)) r.fail(*why);
        return v;
    });
}

ClusterNodeValue decode_node_value(std::string_view key, std::string_view bytes) {
    return naming_key(key, [&] {
        registry::FieldReader r(bytes, "cluster node", kNodeValueVersion, kNodeValueVersion);
        ClusterNodeValue v;
        v.http_endpoint = r.string("http_endpoint");
        v.started_unix_ms = r.integer<std::int64_t>("started_unix_ms");
        v.lease = r.integer<std::int64_t>("lease");
        r.end();
        return v;
    });
}

}  // namespace monitoring_proxy::cluster
