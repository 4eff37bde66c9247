// How tunnelctl shows targets: an aligned table for people, JSON for programs.
#pragma once

#include "monitoring_proxy/registry.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace monitoring_proxy::tunnelctl {

// "2026-01-02T03:04:05Z".
std::string rfc3339(std::int64_t unix_seconds);
std::string render_table(const std::vector<registry::SnapshotEntry>& entries);
std::string render_details(const registry::SnapshotEntry& entry);
// One object per entry: name, state ("connected" | "disconnected"), declared, port, fixed_port, client,
// fingerprint, since (RFC 3339 UTC or null), created, origin, labels, keys, paths, metrics_path.
std::string render_json(const registry::SnapshotEntry& entry);
std::string render_json(const std::vector<registry::SnapshotEntry>& entries);
// tunneld's counters as `NAME{LABEL="VALUE"} N` lines (or one JSON object of those keys), in vocabulary order;
// keys outside the vocabulary (an older or newer tunneld's) are left out.
std::string render_counters(const std::map<std::string, std::uint64_t>& counters, bool json);

}  // namespace monitoring_proxy::tunnelctl
