#include "monitoring_proxy/codec.hpp"

#include "field_codec.hpp"
#include "monitoring_proxy/names.hpp"

#include <cstring>
#include <limits>

namespace monitoring_proxy::registry {
namespace {

// The one target decoder: every field checked, trailing bytes refused; lists are handed to the callbacks as
// views into `bytes`, so the request path (target_allows_path) reads through it without allocating.
struct TargetScalars {
    std::uint16_t fixed_port = 0;
    std::int64_t created_unix = 0;
    Origin origin = Origin::kTunnelctl;
    std::string_view metrics_path;
};

template <class OnLabel, class OnKey, class OnPath>
TargetScalars read_target(std::string_view bytes, OnLabel on_label, OnKey on_key, OnPath on_path) {
    FieldReader in(bytes, "target");
    TargetScalars r;
    r.fixed_port = in.integer<std::uint16_t>("fixed_port");
    r.created_unix = in.integer<std::int64_t>("created");
    auto origin = in.integer<std::uint8_t>("origin");
    if (origin > static_cast<std::uint8_t>(Origin::kSelfRegistered)) in.fail("unknown origin " + std::to_string(origin));
    r.origin = static_cast<Origin>(origin);
    r.metrics_path = in.string("metrics_path");
    for (std::size_t n = in.integer<std::uint16_t>("labels"); n; --n) {
        std::string_view k = in.string("label name");
        on_label(k, in.string("label value"));
    }
    for (std::size_t n = in.integer<std::uint16_t>("keys"); n; --n) on_key(in.string("key"));
    for (std::size_t n = in.integer<std::uint16_t>("paths"); n; --n) on_path(in.string("path"));
    in.end();
    return r;
}

// The one tunnel decoder; the strings stay views into `bytes`.
struct TunnelFields {
    TunnelEndpoint endpoint;
    std::uint64_t instance = 0;
    std::int64_t connected_unix_ms = 0;
    std::string_view client_address, key_fingerprint;
};

TunnelFields read_tunnel(std::string_view bytes) {
    FieldReader in(bytes, "tunnel", 1, kTunnelRecordVersion);
    TunnelFields f;
    f.endpoint.port = in.integer<std::uint16_t>("port");
    f.instance = in.integer<std::uint64_t>("instance");
    f.connected_unix_ms = in.integer<std::int64_t>("connected");
    f.client_address = in.string("client");
    f.key_fingerprint = in.string("fingerprint");
    if (in.version() >= 2) {
        f.endpoint.address = in.integer<std::uint32_t>("address");
        if ((f.endpoint.address >> 24) != 127) in.fail("address is not in 127.0.0.0/8");
    }
    in.end();
    return f;
}

HttpEndpoint read_endpoint(FieldReader& in) {
    HttpEndpoint e;
    e.address = in.integer<std::uint32_t>("http address");
    e.port = in.integer<std::uint16_t>("http port");
    if (e.address == 0 || e.port == 0) in.fail("http endpoint has address or port 0");
    return e;
}

void write_endpoint(Writer& w, const HttpEndpoint& e) {
    w.integer(e.address);
    w.integer(e.port);
}

std::string_view read_node_id(FieldReader& in, const char* field) {
    std::string_view id = in.string(field);
    if (!valid_node_id(id)) in.fail(std::string(field) + " is not a valid node id");
    return id;
}

// The one cluster tunnel decoder; the strings stay views into `bytes`.
struct ClusterTunnelFields {
    ClusterHop hop;
    std::int64_t connected_unix_ms = 0;
    std::string_view key_fingerprint, client_address;
};

ClusterTunnelFields read_cluster_tunnel(std::string_view bytes) {
    FieldReader in(bytes, "cluster tunnel");
    ClusterTunnelFields f;
    f.hop.node_id = read_node_id(in, "node id");
    f.hop.http = read_endpoint(in);
    f.connected_unix_ms = in.integer<std::int64_t>("connected");
    f.key_fingerprint = in.string("fingerprint");
    f.client_address = in.string("client");
    in.end();
    return f;
}

struct ClusterStateFields {
    std::string_view node_id;
    EtcdState etcd = EtcdState::kConnected;
    std::int64_t etcd_since_unix_ms = 0, applied_revision = 0;
};

ClusterStateFields read_cluster_state(std::string_view bytes) {
    FieldReader in(bytes, "cluster state");
    ClusterStateFields f;
    f.node_id = read_node_id(in, "node id");
    const auto etcd = in.integer<std::uint8_t>("etcd state");
    if (etcd > static_cast<std::uint8_t>(EtcdState::kDegraded)) in.fail("unknown etcd state " + std::to_string(etcd));
    f.etcd = static_cast<EtcdState>(etcd);
    f.etcd_since_unix_ms = in.integer<std::int64_t>("etcd since");
    f.applied_revision = in.integer<std::int64_t>("revision");
    in.end();
    return f;
}

}  // namespace

std::string encode(const TargetRecord& r) {
    Writer w(kRecordVersion);
    w.integer(r.fixed_port);
    w.integer(r.created_unix);
    w.integer(static_cast<std::uint8_t>(r.origin));
    w.string(r.metrics_path);
    w.count(r.labels.size(), "labels");
    for (const auto& [k, v] : r.labels) {
        w.string(k);
        w.string(v);
    }
    w.count(r.key_fingerprints.size(), "keys");
    for (const auto& k : r.key_fingerprints) w.string(k);
    w.count(r.path_prefixes.size(), "paths");
    for (const auto& p : r.path_prefixes) w.string(p);
    return w.take();
}

TargetRecord decode_target(std::string_view bytes) {
    TargetRecord r;
    const TargetScalars scalars = read_target(
        bytes, [&](std::string_view k, std::string_view v) { r.labels.emplace_back(k, v); },
        [&](std::string_view key) { r.key_fingerprints.emplace_back(key); },
        [&](std::string_view path) { r.path_prefixes.emplace_back(path); });
    r.fixed_port = scalars.fixed_port;
    r.created_unix = scalars.created_unix;
    r.origin = scalars.origin;
    r.metrics_path = scalars.metrics_path;
    return r;
}

std::string encode(const TunnelRecord& r) {
    Writer w(kTunnelRecordVersion);
    w.integer(r.port);
    w.integer(r.instance);
    w.integer(r.connected_unix_ms);
    w.string(r.client_address);
    w.string(r.key_fingerprint);
    w.integer(r.address);
    return w.take();
}

TunnelRecord decode_tunnel(std::string_view bytes) {
    const TunnelFields f = read_tunnel(bytes);
    TunnelRecord r;
    r.port = f.endpoint.port;
    r.address = f.endpoint.address;
    r.instance = f.instance;
    r.connected_unix_ms = f.connected_unix_ms;
    r.client_address = f.client_address;
    r.key_fingerprint = f.key_fingerprint;
    return r;
}

TunnelEndpoint tunnel_endpoint(std::string_view bytes) { return read_tunnel(bytes).endpoint; }

std::string encode(const InstanceRecord& r) {
    Writer w(kRecordVersion);
    w.integer(r.pid);
    w.integer(r.start_ticks);
    w.integer(r.started_unix_ms);
    return w.take();
}

InstanceRecord decode_instance(std::string_view bytes) {
    FieldReader in(bytes, "instance");
    InstanceRecord r;
    r.pid = in.integer<std::int32_t>("pid");
    r.start_ticks = in.integer<std::uint64_t>("start_ticks");
    r.started_unix_ms = in.integer<std::int64_t>("started");
    in.end();
    return r;
}

std::string encode(const InviteRecord& r) {
    Writer w(kRecordVersion);
    w.string(r.secret_sha256);
    w.integer(r.created_unix);
    w.integer(r.expires_unix);
    w.integer(r.uses_left);
    w.integer(static_cast<std::uint8_t>(r.revoked));
    w.count(r.uses.size(), "uses");
    for (const auto& u : r.uses) {
        w.integer(u.when_unix);
        w.string(u.key_fingerprint);
    }
    return w.take();
}

InviteRecord decode_invite(std::string_view bytes) {
    FieldReader in(bytes, "invite");
    InviteRecord r;
    r.secret_sha256 = in.string("secret_sha256");
    if (r.secret_sha256.size() != 32) in.fail("secret hash is not 32 bytes");
    r.created_unix = in.integer<std::int64_t>("created");
    r.expires_unix = in.integer<std::int64_t>("expires");
    r.uses_left = in.integer<std::uint16_t>("uses_left");
    auto revoked = in.integer<std::uint8_t>("revoked");
    if (revoked > 1) in.fail("revoked is neither 0 nor 1");
    r.revoked = revoked == 1;
    for (std::size_t n = in.integer<std::uint16_t>("uses"); n; --n) {
        InviteUse u;
        u.when_unix = in.integer<std::int64_t>("use time");
        u.key_fingerprint = in.string("use fingerprint");
        r.uses.push_back(std::move(u));
    }
    in.end();
    return r;
}

std::string encode(const ClusterTunnelRecord& r) {
    Writer w(kRecordVersion);
    w.string(r.node_id);
    write_endpoint(w, r.http);
    w.integer(r.connected_unix_ms);
    w.string(r.key_fingerprint);
    w.string(r.client_address);
    return w.take();
}

ClusterTunnelRecord decode_cluster_tunnel(std::string_view bytes) {
    const ClusterTunnelFields f = read_cluster_tunnel(bytes);
    return ClusterTunnelRecord{std::string(f.hop.node_id), f.hop.http, f.connected_unix_ms,
                               std::string(f.key_fingerprint), std::string(f.client_address)};
}

ClusterHop cluster_hop(std::string_view bytes) { return read_cluster_tunnel(bytes).hop; }

std::string encode(const ClusterNodeRecord& r) {
    Writer w(kRecordVersion);
    write_endpoint(w, r.http);
    w.integer(r.tunnels_held);
    w.integer(r.last_seen_unix_ms);
    w.integer(static_cast<std::uint8_t>(r.alive));
    return w.take();
}

ClusterNodeRecord decode_cluster_node(std::string_view bytes) {
    FieldReader in(bytes, "cluster node");
    ClusterNodeRecord r;
    r.http = read_endpoint(in);
    r.tunnels_held = in.integer<std::uint32_t>("tunnels held");
    r.last_seen_unix_ms = in.integer<std::int64_t>("last seen");
    const auto alive = in.integer<std::uint8_t>("alive");
    if (alive > 1) in.fail("alive is neither 0 nor 1");
    r.alive = alive == 1;
    in.end();
    return r;
}

std::string encode(const ClusterStateRecord& r) {
    Writer w(kRecordVersion);
    w.string(r.node_id);
    w.integer(static_cast<std::uint8_t>(r.etcd));
    w.integer(r.etcd_since_unix_ms);
    w.integer(r.applied_revision);
    return w.take();
}

ClusterStateRecord decode_cluster_state(std::string_view bytes) {
    const ClusterStateFields f = read_cluster_state(bytes);
    return ClusterStateRecord{std::string(f.node_id), f.etcd, f.etcd_since_unix_ms, f.applied_revision};
}

std::string_view cluster_self_id(std::string_view bytes) { return read_cluster_state(bytes).node_id; }

std::string encode_u64(std::uint64_t v) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return out;
}

std::uint64_t decode_u64(std::string_view bytes) {
    if (bytes.size() != 8) throw DecodeError("u64 value: " + std::to_string(bytes.size()) + " bytes, expected 8");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    return v;
}

bool target_allows_path(std::string_view bytes, std::string_view path) {
    std::size_t prefixes = 0;
    bool allowed = false;
    read_target(
        bytes, [](std::string_view, std::string_view) {}, [](std::string_view) {},
        [&](std::string_view prefix) {
            ++prefixes;
            // "/metrics" allows "/metrics" and "/metrics?x" style exact hits and "/metrics/..." below it, but not
            // "/metricsfoo"; a prefix ending in '/' allows everything below it.
            if (path.starts_with(prefix) &&
                (path.size() == prefix.size() || prefix.ends_with('/') || path[prefix.size()] == '/'))
                allowed = true;
        });
    return prefixes == 0 || allowed;
}

const CounterSpec& counter_spec(TunneldCounter counter) {
    for (const auto& spec : kTunneldCounters)
        if (spec.id == counter) return spec;
    throw std::invalid_argument("unknown tunneld counter " + std::to_string(static_cast<int>(counter)));
}

std::string encode_counter_key(TunneldCounter counter, std::string_view label_value) {
    const CounterSpec& spec = counter_spec(counter);
    if ((spec.label == CounterLabel::kNone) != label_value.empty())
        throw std::invalid_argument(std::string("counter ") + spec.name +
                                    (label_value.empty() ? " needs a label value" : " takes no label"));
    std::string key(1, static_cast<char>(counter));
    key += label_value;
    return key;
}

std::optional<CounterKey> decode_counter_key(std::string_view key) {
    if (key.empty()) return std::nullopt;
    for (const auto& spec : kTunneldCounters) {
        if (static_cast<std::uint8_t>(spec.id) != static_cast<std::uint8_t>(key[0])) continue;
        std::string_view label = key.substr(1);
        if ((spec.label == CounterLabel::kNone) != label.empty()) return std::nullopt;
        return CounterKey{&spec, label};
    }
    return std::nullopt;
}

std::string counter_text(const CounterKey& key) {
    std::string out = key.spec->name;
    if (key.spec->label == CounterLabel::kNone) return out;
    out += '{';
    out += counter_label_name(key.spec->label);
    out += "=\"";
    for (char c : key.label_value) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    out += "\"}";
    return out;
}

}  // namespace monitoring_proxy::registry
