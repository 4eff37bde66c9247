// Prometheus HTTP service discovery: one target group per declared target, connected or not, so that a host
// that goes away shows up == 0 instead of vanishing. Labels never depend on the connection state (a changing
// label would start a new series); state belongs in metrics.
#pragma once

#include "monitoring_proxy/registry.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace monitoring_proxy::tunnel {

using LabelFilters = std::vector<std::pair<std::string, std::string>>;

struct DiscoveryOptions {
    std::string address;   // what Prometheus scrapes: "proxy.example:80"
    LabelFilters filters;  // keep only targets carrying every one of these labels
};

// [{"targets":["<address>"],"labels":{"__metrics_path__":"/<name>/metrics","tunnel":"<name>",
//   "instance":"<name>",...}}, ...]; "[]" when nothing matches.
std::string render_discovery(const std::vector<registry::SnapshotEntry>& entries, const DiscoveryOptions& options);

// Parses the query string's `label=NAME=VALUE` arguments (repeatable; other arguments are ignored). nullopt and
// `error` set for a malformed one. Values may be percent-encoded.
std::optional<LabelFilters> parse_label_filters(std::string_view query, std::string& error);

// Whether a declared target carries every filter label (its own labels plus tunnel=<name>).
bool matches(const registry::SnapshotEntry& entry, const LabelFilters& filters);

}  // namespace monitoring_proxy::tunnel
