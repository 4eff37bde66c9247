#include "metrics.hpp"

#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/names.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace monitoring_proxy::tunnel {
namespace {

constexpr std::string_view kPrefix = "monitoring_proxy_";

void escape_label_value(std::string& out, std::string_view v) {
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
}

std::string seconds(std::uint64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%" PRIu64 ".%03" PRIu64, ms / 1000, ms % 1000);
    return buf;
}

// Accumulates families so that each gets exactly one HELP and TYPE line, with its samples together.
class Exposition {
public:
    void family(std::string_view name, const char* type, const char* help) {
        out_ += "# HELP ";
        out_ += kPrefix;
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += kPrefix;
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
        current_ = name;
    }
    void sample(const std::vector<std::pair<std::string, std::string>>& labels, const std::string& value) {
        out_ += kPrefix;
        out_ += current_;
        if (!labels.empty()) {
            out_ += '{';
            for (std::size_t i = 0; i < labels.size(); ++i) {
                if (i) out_ += ',';
                out_ += labels[i].first;
                out_ += "=\"";
                escape_label_value(out_, labels[i].second);
                out_ += '"';
            }
            out_ += '}';
        }
        out_ += ' ';
        out_ += value;
        out_ += '\n';
    }
    void sample(const std::vector<std::pair<std::string, std::string>>& labels, std::uint64_t value) {
        sample(labels, std::to_string(value));
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
    std::string current_;
};

// Cluster families. Which node holds a target is its own info-style series (tunnel, node), never a label of the
// target's other series: a tunnel moving between proxies changes only this one.
void render_cluster(Exposition& x, const ClusterMetricsInput& c, const std::vector<const registry::SnapshotEntry*>& declared) {
    x.family("cluster_etcd_up", "gauge", "Whether tunneld's etcd connection is up (1) or degraded (0).");
    x.sample({}, c.state.etcd == registry::EtcdState::kConnected ? 1 : 0);
    x.family("cluster_node_alive", "gauge", "Whether the cluster node's etcd lease is alive (1) or not (0).");
    for (const auto& [id, node] : c.nodes) x.sample({{"node", id}}, node.alive ? 1 : 0);
    x.family("cluster_node_tunnels", "gauge", "Tunnels the cluster node holds.");
    for (const auto& [id, node] : c.nodes) x.sample({{"node", id}}, node.tunnels_held);
    x.family("cluster_tunnel_holder", "gauge", "1 for the node holding the target's tunnel (info-style series).");
    for (const auto* e : declared) {
        if (e->tunnel) {
            x.sample({{"tunnel", e->name}, {"node", c.state.node_id}}, 1);
        } else if (auto it = c.tunnels.find(e->name); it != c.tunnels.end()) {
            x.sample({{"tunnel", e->name}, {"node", it->second.node_id}}, 1);
        }
    }
}

}  // namespace

std::string render_metrics(const MetricsInput& in) {
    Exposition x;
    std::vector<const registry::SnapshotEntry*> declared;
    for (const auto& e : in.entries)
        if (e.target) declared.push_back(&e);

    // tunneld's counters, named and described by the vocabulary in registry_schema.hpp: per-tunnel ones are
    // joined with the declared targets below, the rest pass through.
    using registry::CounterLabel;
    using registry::TunneldCounter;
    std::map<std::string, std::uint64_t> connects, takeovers;
    std::map<const registry::CounterSpec*, std::vector<std::pair<std::string_view, std::uint64_t>>> passthrough;
    for (const auto& [key, value] : in.tunneld_counters) {
        const auto k = registry::decode_counter_key(key);
        if (!k) continue;  // a key of a newer tunneld: never let it break the whole exposition
        if (k->spec->label == CounterLabel::kTunnel) {
            (k->spec->id == TunneldCounter::kConnects ? connects : takeovers)[std::string(k->label_value)] = value;
        } else {
            passthrough[k->spec].emplace_back(k->label_value, value);
        }
    }
    std::map<std::string, const CounterValues*, std::less<>> requests;
    for (const auto& t : in.requests.targets) requests[t.name] = &t.values;

    auto per_target = [&](std::string_view name, const char* type, const char* help, auto value_of) {
        x.family(name, type, help);
        for (const auto* e : declared)
            if (auto v = value_of(*e)) x.sample({{"tunnel", e->name}}, *v);
    };
    using Maybe = std::optional<std::string>;
    auto counter_values = [&](const registry::SnapshotEntry& e) -> const CounterValues* {
        auto it = requests.find(e.name);
        return it == requests.end() ? nullptr : it->second;
    };

    x.family("targets", "gauge", "Declared targets.");
    x.sample({}, declared.size());
    x.family("tunnels_connected", "gauge", "Declared targets with a live tunnel.");
    x.sample({}, static_cast<std::uint64_t>(std::count_if(declared.begin(), declared.end(), [](auto* e) { return e->tunnel.has_value(); })));

    per_target("tunnel_up", "gauge", "Whether the target's tunnel is connected (1) or not (0).",
               [](const registry::SnapshotEntry& e) -> Maybe { return e.tunnel ? "1" : "0"; });
    per_target("tunnel_connected_since_seconds", "gauge", "Unix time the current tunnel connected.",
               [](const registry::SnapshotEntry& e) -> Maybe {
                   if (!e.tunnel) return std::nullopt;
                   return seconds(static_cast<std::uint64_t>(e.tunnel->connected_unix_ms));
               });
    per_target("tunnel_connects_total", "counter", "Tunnels opened for the target since tunneld's registry was created.",
               [&](const registry::SnapshotEntry& e) -> Maybe {
                   auto it = connects.find(e.name);
                   return std::to_string(it == connects.end() ? 0 : it->second);
               });
    per_target("tunnel_takeovers_total", "counter", "Live tunnels replaced by a newer session of an allowed key.",
               [&](const registry::SnapshotEntry& e) -> Maybe {
                   auto it = takeovers.find(e.name);
                   return std::to_string(it == takeovers.end() ? 0 : it->second);
               });

    x.family("tunnel_responses_total", "counter", "Responses sent for the target, by status class.");
    static constexpr const char* kClasses[kStatusClassCount] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (const auto* e : declared) {
        const CounterValues* v = counter_values(*e);
        for (std::size_t c = 0; c < kStatusClassCount; ++c)
            x.sample({{"tunnel", e->name}, {"code", kClasses[c]}}, v ? v->responses_by_class[c] : 0);
    }
    per_target("tunnel_response_bytes_total", "counter", "Bytes sent to clients for the target.",
               [&](const registry::SnapshotEntry& e) -> Maybe {
                   auto* v = counter_values(e);
                   return std::to_string(v ? v->bytes_sent : 0);
               });
    per_target("tunnel_last_scrape_duration_seconds", "gauge", "Duration of the last request for the target.",
               [&](const registry::SnapshotEntry& e) -> Maybe {
                   auto* v = counter_values(e);
                   if (!v || !v->last_unix_ms) return std::nullopt;
                   return seconds(v->last_duration_ms);
               });
    per_target("tunnel_last_scrape_timestamp_seconds", "gauge", "Unix time of the last request for the target.",
               [&](const registry::SnapshotEntry& e) -> Maybe {
                   auto* v = counter_values(e);
                   if (!v || !v->last_unix_ms) return std::nullopt;
                   return seconds(static_cast<std::uint64_t>(v->last_unix_ms));
               });
    per_target("tunnel_last_scrape_status", "gauge", "HTTP status of the last request for the target.",
               [&](const registry::SnapshotEntry& e) -> Maybe {
                   auto* v = counter_values(e);
                   if (!v || !v->last_unix_ms) return std::nullopt;
                   return std::to_string(v->last_status);
               });

    x.family("requests_total", "counter", "Requests the module routed, by outcome.");
    for (std::size_t o = 0; o < kOutcomeCount; ++o)
        x.sample({{"outcome", std::string(outcome_label(static_cast<Outcome>(o)))}}, in.requests.totals.outcomes[o]);
    x.family("untracked_requests_total", "counter", "Requests of targets that found the per-target counter table full (counted in totals only).");
    x.sample({}, in.requests.dropped_targets);
    x.family("registry_unreadable_records", "gauge",
             "Registry records this page skipped because they do not decode (a newer version's, or damaged); nginx's error.log names each.");
    x.sample({}, in.unreadable_records);
    if (in.cluster) render_cluster(x, *in.cluster, declared);

    // In vocabulary order, so the exposition does not depend on which counters happen to exist.
    for (const auto& spec : registry::kTunneldCounters) {
        auto it = passthrough.find(&spec);
        if (it == passthrough.end()) continue;
        x.family(std::string("tunneld_") + spec.name, "counter", spec.help);
        for (const auto& [label_value, value] : it->second) {
            if (spec.label == CounterLabel::kNone) x.sample({}, value);
            else x.sample({{registry::counter_label_name(spec.label), std::string(label_value)}}, value);
        }
    }
    return x.take();
}

}  // namespace monitoring_proxy::tunnel
