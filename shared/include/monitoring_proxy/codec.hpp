// Encoding and decoding of registry values (format in registry_schema.hpp). Decoders throw DecodeError on any
// malformed input: they are fuzzed.
#pragma once

#include "monitoring_proxy/registry_schema.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace monitoring_proxy::registry {

class DecodeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

std::string encode(const TargetRecord& r);
std::string encode(const TunnelRecord& r);
std::string encode(const InstanceRecord& r);
std::string encode(const InviteRecord& r);
TargetRecord decode_target(std::string_view bytes);
TunnelRecord decode_tunnel(std::string_view bytes);
InstanceRecord decode_instance(std::string_view bytes);
InviteRecord decode_invite(std::string_view bytes);
std::string encode(const ClusterTunnelRecord& r);
std::string encode(const ClusterNodeRecord& r);
std::string encode(const ClusterStateRecord& r);
// Cluster records: node ids must be valid (valid_node_id), endpoints non-zero, enums known.
ClusterTunnelRecord decode_cluster_tunnel(std::string_view bytes);
ClusterNodeRecord decode_cluster_node(std::string_view bytes);
ClusterStateRecord decode_cluster_state(std::string_view bytes);
std::string encode_u64(std::uint64_t v);
std::uint64_t decode_u64(std::string_view bytes);

// The hot path's decoders: no allocation, views into `bytes`.
// Port of a TunnelRecord without decoding the strings.
// Where a tunnel record says to connect: the hot path's read of a tunnel record. It runs the one tunnel decoder
// (every field and the trailing-bytes check), without allocating.
struct TunnelEndpoint {
    std::uint32_t address = kLoopbackAddress;  // host byte order
    std::uint16_t port = 0;
};
TunnelEndpoint tunnel_endpoint(std::string_view bytes);

// The hot path's read of a cluster tunnel record (the one decoder, every field checked): where to hop, and the
// holding node's id as a view into `bytes`.
struct ClusterHop {
    HttpEndpoint http;
    std::string_view node_id;
};
ClusterHop cluster_hop(std::string_view bytes);
// The hot path's read of the cluster state record: this node's id, a view into `bytes`.
std::string_view cluster_self_id(std::string_view bytes);

// Keys of the live counters database (registry_schema.hpp). encode_counter_key throws std::invalid_argument
// for a label the counter does not take (or a missing one); decode_counter_key returns nullopt for a key that
// is not one of the vocabulary's (an unknown id, a label where none belongs).
struct CounterKey {
    const CounterSpec* spec = nullptr;
    std::string_view label_value;  // empty for CounterLabel::kNone
};
std::string encode_counter_key(TunneldCounter counter, std::string_view label_value = {});
std::optional<CounterKey> decode_counter_key(std::string_view key);
const CounterSpec& counter_spec(TunneldCounter counter);
// "name" or "name{label=\"value\"}", as tunnelctl counters prints it (label values escaped as Prometheus does).
std::string counter_text(const CounterKey& key);
// Whether `path` is allowed by a TargetRecord's path_prefixes (every path when there are none).
bool target_allows_path(std::string_view bytes, std::string_view path);

}  // namespace monitoring_proxy::registry
