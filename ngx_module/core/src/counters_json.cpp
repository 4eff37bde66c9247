#include "tunnel/counters_json.hpp"

#include "monitoring_proxy/json.hpp"

#include <cstdio>

namespace monitoring_proxy::tunnel {

namespace {

using json::append_string;  // the registry library's escaping, shared by every JSON the proxy writes

template <typename Number>
void append_field(std::string& out, std::string_view name, Number value, bool comma = true) {
    append_string(out, name);
    out.push_back(':');
    out += std::to_string(value);
    if (comma) out.push_back(',');
}

void append_values(std::string& out, const CounterValues& v) {
    out.push_back('{');
    append_field(out, "requests", v.requests);
    out += "\"responses\":{";
    for (std::size_t i = 0; i < kStatusClassCount; ++i) {
        const std::string label = std::to_string(i + 1) + "xx";
        append_field(out, label, v.responses_by_class[i], i + 1 < kStatusClassCount);
    }
    out += "},\"outcomes\":{";
    for (std::size_t i = 0; i < kOutcomeCount; ++i) {
        append_field(out, outcome_label(static_cast<Outcome>(i)), v.outcomes[i], i + 1 < kOutcomeCount);
    }
    out += "},";
    append_field(out, "bytes_sent", v.bytes_sent);
    out += "\"last\":{";
    append_field(out, "unix_ms", v.last_unix_ms);
    append_field(out, "status", v.last_status);
    append_field(out, "duration_ms", v.last_duration_ms, false);
    out += "}}";
}

}  // namespace

std::string counters_json(const CountersSnapshot& snapshot) {
    std::string out = "{";
    append_field(out, "capacity", snapshot.capacity);
    append_field(out, "dropped_targets", snapshot.dropped_targets);
    out += "\"totals\":";
    append_values(out, snapshot.totals);
    out += ",\"targets\":{";
    bool first = true;
    for (const TargetCounters& target : snapshot.targets) {
        if (!first) out.push_back(',');
        first = false;
        append_string(out, target.name);
        out.push_back(':');
        append_values(out, target.values);
    }
    out += "}}\n";
    return out;
}

}  // namespace monitoring_proxy::tunnel
