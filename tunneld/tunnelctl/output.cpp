#include "output.hpp"

#include "monitoring_proxy/address.hpp"
#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/json.hpp"

#include <algorithm>
#include <ctime>

namespace monitoring_proxy::tunnelctl {

std::string rfc3339(std::int64_t unix_seconds) {
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

namespace {
using registry::Origin;
using registry::SnapshotEntry;

const char* origin_name(Origin o) {
    switch (o) {
        case Origin::kTunnelctl: return "tunnelctl";
        case Origin::kImport: return "import";
        case Origin::kSelfRegistered: return "self-registered";
    }
    return "unknown";
}

const char* state_of(const SnapshotEntry& e) { return e.tunnel ? "connected" : "disconnected"; }

std::string labels_text(const SnapshotEntry& e) {
    std::string out;
    if (!e.target) return out;
    for (const auto& [k, v] : e.target->labels) out += (out.empty() ? "" : ",") + k + "=" + v;
    return out;
}
}  // namespace

std::string render_table(const std::vector<SnapshotEntry>& entries) {
    std::vector<std::vector<std::string>> rows{{"NAME", "STATE", "LISTENER", "CLIENT", "SINCE", "KEYS", "LABELS"}};
    for (const auto& e : entries) {
        std::string port = e.tunnel ? endpoint_text(e.tunnel->address, e.tunnel->port)
                           : (e.target && e.target->fixed_port) ? std::to_string(e.target->fixed_port) + "*"
                                                                : "-";
        rows.push_back({e.name + (e.target ? "" : " (undeclared)"), state_of(e), port,
                        e.tunnel ? e.tunnel->client_address : "-",
                        e.tunnel ? rfc3339(e.tunnel->connected_unix_ms / 1000) : "-",
                        e.target ? std::to_string(e.target->key_fingerprints.size()) : "-", labels_text(e)});
    }
    std::vector<std::size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
        }
        out += line + "\n";
    }
    if (entries.empty()) out += "(no targets: declare one with `tunnelctl add NAME`)\n";
    return out;
}

std::string render_details(const SnapshotEntry& e) {
    std::string out = "name:         " + e.name + "\n";
    out += std::string("state:        ") + state_of(e) + "\n";
    if (e.tunnel) {
        out += "listener:     " + endpoint_text(e.tunnel->address, e.tunnel->port) + "\n";
        out += "client:       " + e.tunnel->client_address + "\n";
        out += "key:          " + e.tunnel->key_fingerprint + "\n";
        out += "since:        " + rfc3339(e.tunnel->connected_unix_ms / 1000) + "\n";
    }
    if (!e.target) return out + "declared:     no (its target was removed; the tunnel is not served)\n";
    const auto& t = *e.target;
    out += "fixed port:   " + (t.fixed_port ? std::to_string(t.fixed_port) : std::string("none (tunneld picks)")) + "\n";
    out += "metrics path: " + (t.metrics_path.empty() ? std::string("/metrics") : t.metrics_path) + "\n";
    out += std::string("origin:       ") + origin_name(t.origin) + ", " + rfc3339(t.created_unix) + "\n";
    out += "keys:        " + std::string(t.key_fingerprints.empty() ? " none (served with the shared key)" : "") + "\n";
    for (const auto& k : t.key_fingerprints) out += "  " + k + "\n";
    out += "labels:      " + std::string(t.labels.empty() ? " none" : "") + "\n";
    for (const auto& [k, v] : t.labels) out += "  " + k + "=" + v + "\n";
    out += "paths:       " + std::string(t.path_prefixes.empty() ? " all" : "") + "\n";
    for (const auto& p : t.path_prefixes) out += "  " + p + "\n";
    return out;
}

std::string render_json(const SnapshotEntry& e) {
    using json::quote;
    std::string out = "{\"name\":" + quote(e.name) + ",\"state\":\"" + state_of(e) + "\"";
    out += std::string(",\"declared\":") + (e.target ? "true" : "false");
    out += ",\"port\":" + (e.tunnel ? std::to_string(e.tunnel->port) : std::string("null"));
    out += ",\"address\":" + (e.tunnel ? quote(ipv4_text(e.tunnel->address)) : std::string("null"));
    out += ",\"client\":" + (e.tunnel ? quote(e.tunnel->client_address) : std::string("null"));
    out += ",\"fingerprint\":" + (e.tunnel ? quote(e.tunnel->key_fingerprint) : std::string("null"));
    out += ",\"since\":" + (e.tunnel ? quote(rfc3339(e.tunnel->connected_unix_ms / 1000)) : std::string("null"));
    if (e.target) {
        const auto& t = *e.target;
        out += ",\"fixed_port\":" + (t.fixed_port ? std::to_string(t.fixed_port) : std::string("null"));
        out += ",\"created\":" + quote(rfc3339(t.created_unix));
        out += std::string(",\"origin\":\"") + origin_name(t.origin) + "\"";
        out += ",\"metrics_path\":" + quote(t.metrics_path.empty() ? "/metrics" : t.metrics_path);
        out += ",\"labels\":{";
        for (std::size_t i = 0; i < t.labels.size(); ++i)
            out += (i ? "," : "") + quote(t.labels[i].first) + ":" + quote(t.labels[i].second);
        out += "},\"keys\":[";
        for (std::size_t i = 0; i < t.key_fingerprints.size(); ++i) out += (i ? "," : "") + quote(t.key_fingerprints[i]);
        out += "],\"paths\":[";
        for (std::size_t i = 0; i < t.path_prefixes.size(); ++i) out += (i ? "," : "") + quote(t.path_prefixes[i]);
        out += "]";
    }
    return out + "}";
}

std::string render_json(const std::vector<SnapshotEntry>& entries) {
    std::string out = "[";
    for (std::size_t i = 0; i < entries.size(); ++i) out += (i ? ",\n " : "") + render_json(entries[i]);
    return out + "]\n";
}

std::string render_counters(const std::map<std::string, std::uint64_t>& counters, bool json) {
    std::vector<std::pair<std::string, std::uint64_t>> lines;
    for (const auto& spec : registry::kTunneldCounters) {
        for (const auto& [key, value] : counters) {
            const auto k = registry::decode_counter_key(key);
            if (k && k->spec == &spec) lines.emplace_back(registry::counter_text(*k), value);
        }
    }
    std::string out = json ? "{" : "";
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (json) out += (i ? "," : "") + json::quote(lines[i].first) + ":" + std::to_string(lines[i].second);
        else out += lines[i].first + " " + std::to_string(lines[i].second) + "\n";
    }
    return json ? out + "}\n" : out;
}

}  // namespace monitoring_proxy::tunnelctl
