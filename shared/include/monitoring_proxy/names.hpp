// Validation of the names the registry stores. Each check returns an empty string when valid, otherwise a
// message that states the rule, ready to show a user.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace monitoring_proxy {

// Target names: lower-case [a-z0-9][a-z0-9._-]{0,62}. They appear in URLs, Prometheus labels and file names.
inline constexpr std::size_t kMaxTargetNameLength = 63;
inline constexpr const char* kTargetNameRule = "[a-z0-9][a-z0-9._-]{0,62} (lower case, at most 63 characters)";
bool valid_target_name(std::string_view name) noexcept;
std::string check_target_name(std::string_view name);

// Cluster node ids (tunneld --node-id): the same grammar as target names. They appear in the
// Monitoring-Proxy-Hop header, Prometheus labels and etcd keys.
inline constexpr std::size_t kMaxNodeIdLength = kMaxTargetNameLength;
bool valid_node_id(std::string_view id) noexcept;
std::string check_node_id(std::string_view id);

// Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*, and names starting with "__" are reserved.
bool valid_label_name(std::string_view name) noexcept;
std::string check_label_name(std::string_view name);
// Label values: any UTF-8, at most 1024 bytes here.
std::string check_label_value(std::string_view value);

// Allowed path prefixes and metrics paths: start with '/', printable ASCII, no "..", no '?', '#' or '%'.
std::string check_path(std::string_view path);

}  // namespace monitoring_proxy
