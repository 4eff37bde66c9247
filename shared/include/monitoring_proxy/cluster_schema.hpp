// The cluster schema: what cluster mode keeps in etcd, under the prefix (--etcd-prefix, default
// /monitoring-proxy/). The contract between every tunneld and tunnelctl of a cluster; nginx never reads it (each
// tunneld mirrors it into its local registry). Versioned by the key layout: everything lives under
// <prefix>v1/, so a later incompatible layout (v2/) can run beside it during an upgrade.
//
//   <prefix>v1/targets/<name>   a declared target: exactly the registry's TargetRecord encoding
//                               (registry_schema.hpp, codec.hpp), port, labels, bound keys, paths. No lease:
//                               configuration, written by tunnelctl --etcd (one transaction per command).
//   <prefix>v1/tunnels/<name>   the live tunnel of <name>: ClusterTunnelValue, attached to the holding node's
//                               lease (gone when that node dies). Written only by compare-and-swap on the
//                               mod_revision the writer read (or "absent"), so two nodes never both win.
//   <prefix>v1/nodes/<id>       a live tunneld node: ClusterNodeValue, attached to that node's lease.
//
// Values are binary in the registry's style (a record version byte, little-endian fixed-width integers,
// u16-length strings; every length checked, trailing bytes refused): tunnelctl --etcd ls is the readable view,
// not etcdctl. A value that does not decode is a ClusterDecodeError naming its key: logged, skipped, never a
// crash and never a reason to drop other keys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "monitoring_proxy/codec.hpp"

namespace monitoring_proxy::cluster {

inline constexpr const char* kDefaultPrefix = "/monitoring-proxy/";
inline constexpr const char* kEtcdEnvVar = "MONITORING_PROXY_ETCD";
inline constexpr const char* kLayoutVersion = "v1/";
inline constexpr std::uint8_t kTunnelValueVersion = 1;
inline constexpr std::uint8_t kNodeValueVersion = 1;

enum class KeyKind { kTarget, kTunnel, kNode };

// tunnels/<name>
struct ClusterTunnelValue {
    std::string node_id;            // the node holding the tunnel
    std::string http_endpoint;      // that node's nginx (its --advertise-http HOST:PORT)
    std::int64_t connected_unix_ms = 0;  // the session's start: the newest session wins a takeover
    std::string key_fingerprint;
    std::string client_address;
    std::uint64_t session = 0;      // the holding node's forward id: tells two sessions of one node apart
    bool operator==(const ClusterTunnelValue&) const = default;
};

// nodes/<id>
struct ClusterNodeValue {
    std::string http_endpoint;
    std::int64_t started_unix_ms = 0;
    std::int64_t lease = 0;
    bool operator==(const ClusterNodeValue&) const = default;
};

// A value under the prefix that cannot be used; what() names the key.
class ClusterDecodeError : public registry::DecodeError {
public:
    ClusterDecodeError(const std::string& key, const std::string& why)
        : registry::DecodeError("etcd key " + key + ": " + why), key(key) {}
    std::string key;
};

// Key layout. `prefix` ends with '/' (normalise_prefix).
std::string normalise_prefix(std::string_view prefix);  // adds a missing trailing '/'; "" is refused
std::string root(std::string_view prefix);              // <prefix>v1/
std::string kind_prefix(std::string_view prefix, KeyKind kind);  // <prefix>v1/targets/ ...
std::string key_of(std::string_view prefix, KeyKind kind, std::string_view name);

struct ParsedKey {
    KeyKind kind;
    std::string name;  // validated target name or node id
};
// What a key under root(prefix) is; ClusterDecodeError for a foreign or malformed key (unknown kind, bad name).
ParsedKey parse_key(std::string_view prefix, std::string_view key);

// Node ids: [a-z0-9][a-z0-9._-]*, at most 63 bytes. Empty optional: valid; else why not.
std::optional<std::string> node_id_problem(std::string_view id);

std::string encode(const ClusterTunnelValue& v);
std::string encode(const ClusterNodeValue& v);
// Each throws ClusterDecodeError naming `key`.
registry::TargetRecord decode_target_value(std::string_view key, std::string_view bytes);
ClusterTunnelValue decode_tunnel_value(std::string_view key, std::string_view bytes);
ClusterNodeValue decode_node_value(std::string_view key, std::string_view bytes);

}  // namespace monitoring_proxy::cluster
