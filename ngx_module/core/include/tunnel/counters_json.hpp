// The counters as JSON, for the `tunnel_counters` debugging handler and for tests. The metrics and status pages
// render from the same CountersSnapshot.
#pragma once

#include "tunnel/counters.hpp"

#include <string>

namespace monitoring_proxy::tunnel {

// {"capacity":N,"dropped_targets":N,"totals":{...},"targets":{"NAME":{...},...}} where each {...} is
// {"requests":N,"responses":{"1xx":N,...,"5xx":N},"outcomes":{"proxied":N,...},"bytes_sent":N,
//  "last":{"unix_ms":N,"status":N,"duration_ms":N}}
std::string counters_json(const CountersSnapshot& snapshot);

}  // namespace monitoring_proxy::tunnel
