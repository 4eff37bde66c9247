// The proxy's own metrics in the Prometheus text format (version 0.0.4), from three sources: the registry
// (declared targets, live tunnels), tunneld's counters (stored in the registry) and the module's request
// counters (shared memory). Output passes `promtool check metrics`.
#pragma once

#include "monitoring_proxy/registry.hpp"
#include "tunnel/counters.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace monitoring_proxy::tunnel {

// The registry's cluster view (registry_schema.hpp); absent in single-node mode.
struct ClusterMetricsInput {
    registry::ClusterStateRecord state;
    std::map<std::string, registry::ClusterNodeRecord> nodes;
    std::map<std::string, registry::ClusterTunnelRecord> tunnels;  // held by other nodes
};

struct MetricsInput {
    const std::vector<registry::SnapshotEntry>& entries;
    const std::map<std::string, std::uint64_t>& tunneld_counters;  // live counters keys (registry_schema.hpp)
    const CountersSnapshot& requests;
    const ClusterMetricsInput* cluster = nullptr;  // nullptr: single-node, no cluster families at all
    std::size_t unreadable_records = 0;            // registry records skipped because they do not decode
};

std::string render_metrics(const MetricsInput& input);

}  // namespace monitoring_proxy::tunnel
