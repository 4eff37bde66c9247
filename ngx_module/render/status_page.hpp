// The operator's status page: one table of targets, problems first, plain HTML and CSS with no external assets,
// refreshing itself; and the same rows as JSON.
#pragma once

#include "metrics.hpp"
#include "monitoring_proxy/registry.hpp"
#include "tunnel/counters.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace monitoring_proxy::tunnel {

struct StatusRow {
    std::string name;
    bool declared = false;
    bool connected = false;
    std::int64_t since_unix_ms = 0;  // connected since
    std::string client;
    std::string fingerprint;
    std::uint16_t port = 0;
    std::uint32_t address = 0;  // the forward's loopback listener (host byte order)
    std::vector<std::pair<std::string, std::string>> labels;
    CounterValues requests;          // last scrape and bytes
    int severity = 0;                // 2 problem, 1 warning, 0 fine: the sort key
    std::string problem;             // why, in words
};

// Invitations (tunnelctl invite): name, state, expiry and who used them; the record holds no token to show.
using Invites = std::map<std::string, registry::InviteRecord>;

// Rows sorted problems first, then by name.
std::vector<StatusRow> status_rows(const std::vector<registry::SnapshotEntry>& entries,
                                   const CountersSnapshot& requests);

// `cluster`: the cluster section (etcd state, nodes, the node holding each target); nullptr in single-node mode.
// `unreadable`: registry records the page skipped (they do not decode), listed so that nothing vanishes unseen.
std::string render_status_html(const std::vector<StatusRow>& rows, std::int64_t now_unix_ms, int refresh_seconds,
                               const Invites& invites = {}, const ClusterMetricsInput* cluster = nullptr,
                               const std::vector<registry::UnreadableRecord>& unreadable = {});
std::string render_status_json(const std::vector<StatusRow>& rows, std::int64_t now_unix_ms,
                               const Invites& invites = {}, const ClusterMetricsInput* cluster = nullptr,
                               const std::vector<registry::UnreadableRecord>& unreadable = {});

}  // namespace monitoring_proxy::tunnel
