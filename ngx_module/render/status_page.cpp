#include "status_page.hpp"

#include "monitoring_proxy/address.hpp"
#include "monitoring_proxy/json.hpp"

#include <algorithm>
#include <ctime>
#include <map>

namespace monitoring_proxy::tunnel {
namespace {

void html_escape(std::string& out, std::string_view s) {
    for (char c : s) {
        switch (c) {
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '&': out += "&amp;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
}

std::string utc(std::int64_t unix_ms) {
    if (unix_ms <= 0) return {};
    std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string ago(std::int64_t now_ms, std::int64_t then_ms) {
    if (then_ms <= 0) return "never";
    std::int64_t s = std::max<std::int64_t>(0, (now_ms - then_ms) / 1000);
    if (s < 120) return std::to_string(s) + " s ago";
    if (s < 7200) return std::to_string(s / 60) + " min ago";
    if (s < 172800) return std::to_string(s / 3600) + " h ago";
    return std::to_string(s / 86400) + " d ago";
}

std::string human_bytes(std::uint64_t b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

// Open invitations first (they are what an operator waits on), then the rest by name.
std::vector<std::pair<std::string, const registry::InviteRecord*>> invites_in_order(const Invites& invites,
                                                                                   std::int64_t now_ms) {
    std::vector<std::pair<std::string, const registry::InviteRecord*>> out;
    for (const auto& [name, r] : invites) out.emplace_back(name, &r);
    std::stable_sort(out.begin(), out.end(), [&](const auto& a, const auto& b) {
        const bool a_open = std::string_view(registry::invite_state(*a.second, now_ms / 1000)) == "open";
        const bool b_open = std::string_view(registry::invite_state(*b.second, now_ms / 1000)) == "open";
        return a_open > b_open;
    });
    return out;
}

void invites_html(std::string& o, const Invites& invites, std::int64_t now_ms) {
    if (invites.empty()) return;
    o += "<h2>Invitations</h2>\n<table id=\"invitations\"><thead><tr><th>Target</th><th>State</th><th>Expires</th>"
         "<th>Uses left</th><th>Used</th></tr></thead><tbody>\n";
    for (const auto& [name, r] : invites_in_order(invites, now_ms)) {
        o += "<tr data-invite=\"";
        html_escape(o, name);
        o += "\"><td>";
        html_escape(o, name);
        o += "</td><td class=\"state\">";
        o += registry::invite_state(*r, now_ms / 1000);
        o += "</td><td>" + utc(r->expires_unix * 1000) + "</td><td>" + std::to_string(r->uses_left) + "</td><td>";
        if (r->uses.empty()) o += "<span class=\"muted\">never</span>";
        for (const auto& u : r->uses) {
            o += utc(u.when_unix * 1000) + " by <code>";
            html_escape(o, u.key_fingerprint);
            o += "</code><br>";
        }
        o += "</td></tr>\n";
    }
    o += "</tbody></table>\n";
}

void invites_json(std::string& o, const Invites& invites, std::int64_t now_ms) {
    using json::append_string;
    o += ",\"invitations\":[";
    bool first = true;
    for (const auto& [name, r] : invites_in_order(invites, now_ms)) {
        o += first ? "\n{\"name\":" : ",\n{\"name\":";
        first = false;
        append_string(o, name);
        o += ",\"state\":";
        append_string(o, registry::invite_state(*r, now_ms / 1000));
        o += ",\"expires\":";
        append_string(o, utc(r->expires_unix * 1000));
        o += ",\"uses_left\":" + std::to_string(r->uses_left) + ",\"uses\":[";
        for (std::size_t i = 0; i < r->uses.size(); ++i) {
            o += i ? ",{\"time\":" : "{\"time\":";
            append_string(o, utc(r->uses[i].when_unix * 1000));
            o += ",\"fingerprint\":";
            append_string(o, r->uses[i].key_fingerprint);
            o += "}";
        }
        o += "]}";
    }
    o += first ? "]" : "\n]";
}

}  // namespace

std::vector<StatusRow> status_rows(const std::vector<registry::SnapshotEntry>& entries,
                                   const CountersSnapshot& requests) {
    std::map<std::string, const CounterValues*, std::less<>> by_name;
    for (const auto& t : requests.targets) by_name[t.name] = &t.values;
    std::vector<StatusRow> rows;
    for (const auto& e : entries) {
        StatusRow r;
        r.name = e.name;
        r.declared = e.target.has_value();
        r.connected = e.tunnel.has_value();
        if (e.tunnel) {
            r.since_unix_ms = e.tunnel->connected_unix_ms;
            r.client = e.tunnel->client_address;
            r.fingerprint = e.tunnel->key_fingerprint;
            r.port = e.tunnel->port;
            r.address = e.tunnel->address;
        }
        if (e.target) r.labels = e.target->labels;
        if (auto it = by_name.find(e.name); it != by_name.end()) r.requests = *it->second;
        if (!r.declared) {
            r.severity = 1, r.problem = "tunnel without a declared target (not served)";
        } else if (!r.connected) {
            r.severity = 2, r.problem = "no live tunnel: the host is down or cannot reach the SSH port";
        } else if (r.requests.last_unix_ms && r.requests.last_status >= 500) {
            r.severity = 2, r.problem = "last scrape failed (" + std::to_string(r.requests.last_status) + ")";
        } else if (r.requests.last_unix_ms && r.requests.last_status >= 400) {
            r.severity = 1, r.problem = "last scrape answered " + std::to_string(r.requests.last_status);
        }
        rows.push_back(std::move(r));
    }
    std::stable_sort(rows.begin(), rows.end(), [](const StatusRow& a, const StatusRow& b) {
        return a.severity != b.severity ? a.severity > b.severity : a.name < b.name;
    });
    return rows;
}

namespace {

// The node holding `row`'s tunnel: this one when it is connected here, else the cluster view's; empty if none.
std::string holder_of(const StatusRow& row, const ClusterMetricsInput& c) {
    if (row.connected) return c.state.node_id;
    auto it = c.tunnels.find(row.name);
    return it == c.tunnels.end() ? std::string() : it->second.node_id;
}

const char* etcd_text(const ClusterMetricsInput& c) {
    return c.state.etcd == registry::EtcdState::kConnected ? "connected" : "degraded";
}

void cluster_html(std::string& o, const ClusterMetricsInput& c, const std::vector<StatusRow>& rows, std::int64_t now_ms) {
    o += "<h2>Cluster</h2>\n<p class=\"summary\">this node <code>";
    html_escape(o, c.state.node_id);
    o += std::string("</code> &middot; etcd ") + etcd_text(c) + " since " + utc(c.state.etcd_since_unix_ms) +
         " &middot; revision " + std::to_string(c.state.applied_revision) + "</p>\n";
    o += "<table id=\"nodes\"><thead><tr><th>Node</th><th>HTTP</th><th>Alive</th><th>Tunnels</th><th>Last seen</th>"
         "</tr></thead><tbody>\n";
    for (const auto& [id, node] : c.nodes) {
        o += "<tr data-node=\"";
        html_escape(o, id);
        o += "\"><td>";
        html_escape(o, id);
        o += "</td><td><code>" + endpoint_text(node.http.address, node.http.port) + "</code></td><td>" +
             (node.alive ? "yes" : "no") + "</td><td>" + std::to_string(node.tunnels_held) + "</td><td>" +
             ago(now_ms, node.last_seen_unix_ms) + "</td></tr>\n";
    }
    o += "</tbody></table>\n<table id=\"holders\"><thead><tr><th>Target</th><th>Held by</th></tr></thead><tbody>\n";
    for (const auto& r : rows) {
        o += "<tr data-target=\"";
        html_escape(o, r.name);
        o += "\"><td>";
        html_escape(o, r.name);
        o += "</td><td>";
        const std::string holder = holder_of(r, c);
        if (holder.empty()) o += "<span class=\"muted\">nobody</span>";
        else html_escape(o, holder);
        o += "</td></tr>\n";
    }
    o += "</tbody></table>\n";
}

void cluster_json(std::string& o, const ClusterMetricsInput& c, const std::vector<StatusRow>& rows) {
    using json::append_string;
    o += ",\"cluster\":{\"node\":";
    append_string(o, c.state.node_id);
    o += ",\"etcd\":";
    append_string(o, etcd_text(c));
    o += ",\"etcd_since\":";
    append_string(o, utc(c.state.etcd_since_unix_ms));
    o += ",\"revision\":" + std::to_string(c.state.applied_revision) + ",\"nodes\":{";
    bool first = true;
    for (const auto& [id, node] : c.nodes) {
        if (!first) o += ',';
        first = false;
        append_string(o, id);
        o += ":{\"http\":";
        append_string(o, endpoint_text(node.http.address, node.http.port));
        o += std::string(",\"alive\":") + (node.alive ? "true" : "false") +
             ",\"tunnels\":" + std::to_string(node.tunnels_held) + ",\"last_seen\":";
        append_string(o, utc(node.last_seen_unix_ms));
        o += '}';
    }
    o += "},\"holders\":{";
    first = true;
    for (const auto& r : rows) {
        if (!first) o += ',';
        first = false;
        append_string(o, r.name);
        o += ':';
        const std::string holder = holder_of(r, c);
        if (holder.empty()) o += "null";
        else append_string(o, holder);
    }
    o += "}}";
}

void unreadable_html(std::string& o, const std::vector<registry::UnreadableRecord>& unreadable) {
    if (unreadable.empty()) return;
    o += "<h2>Unreadable registry records</h2>\n<p class=\"summary\">Skipped on this page (written by a newer "
         "version, or damaged); nginx's error.log names each.</p>\n<table id=\"unreadable\"><thead><tr><th>Kind"
         "</th><th>Name</th><th>Error</th></tr></thead><tbody>\n";
    for (const auto& u : unreadable) {
        o += "<tr class=\"problem\"><td>";
        html_escape(o, u.kind);
        o += "</td><td>";
        html_escape(o, u.name);
        o += "</td><td><code>";
        html_escape(o, u.error);
        o += "</code></td></tr>\n";
    }
    o += "</tbody></table>\n";
}

void unreadable_json(std::string& o, const std::vector<registry::UnreadableRecord>& unreadable) {
    o += ",\"unreadable\":[";
    for (std::size_t i = 0; i < unreadable.size(); ++i) {
        o += i ? ",{\"kind\":" : "{\"kind\":";
        json::append_string(o, unreadable[i].kind);
        o += ",\"name\":";
        json::append_string(o, unreadable[i].name);
        o += ",\"error\":";
        json::append_string(o, unreadable[i].error);
        o += '}';
    }
    o += ']';
}

}  // namespace

std::string render_status_html(const std::vector<StatusRow>& rows, std::int64_t now_ms, int refresh_seconds,
                               const Invites& invites, const ClusterMetricsInput* cluster,
                               const std::vector<registry::UnreadableRecord>& unreadable) {
    std::size_t connected = std::count_if(rows.begin(), rows.end(), [](auto& r) { return r.connected; });
    std::size_t problems = std::count_if(rows.begin(), rows.end(), [](auto& r) { return r.severity == 2; });
    std::string o;
    o.reserve(2048 + rows.size() * 600);
    o += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
    o += "<meta http-equiv=\"refresh\" content=\"" + std::to_string(refresh_seconds) + "\">\n";
    o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    o += "<title>monitoring-proxy: " + std::to_string(problems) + " problem" + (problems == 1 ? "" : "s") + "</title>\n";
    o += R"(<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}
h2{font-size:1.1em;margin:1.5em 0 .5em}
p.summary{margin:0 0 1em;color:#555}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:.45em .7em;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{background:#f0f0f2;font-weight:600;position:sticky;top:0}
tr.problem td:first-child{border-left:4px solid #d70015}
tr.warning td:first-child{border-left:4px solid #c77c00}
tr.ok td:first-child{border-left:4px solid #248a3d}
.state{font-weight:600}
tr.problem .state{color:#d70015} tr.warning .state{color:#c77c00} tr.ok .state{color:#248a3d}
code{font:12px ui-monospace,monospace;word-break:break-all}
.label{display:inline-block;background:#eef;border-radius:3px;padding:0 .35em;margin:0 .2em .2em 0;font-size:12px}
.muted{color:#888}
</style></head><body>
)";
    o += "<h1>monitoring-proxy</h1>\n<p class=\"summary\">" + std::to_string(rows.size()) + " targets, " +
         std::to_string(connected) + " connected, " + std::to_string(problems) + " with problems &middot; " +
         utc(now_ms) + " &middot; refreshes every " + std::to_string(refresh_seconds) + " s &middot; " +
         "<a href=\"?format=json\">JSON</a></p>\n";
    o += "<table id=\"targets\"><thead><tr><th>Target</th><th>State</th><th>Since</th><th>Client</th><th>Key</th>"
         "<th>Last scrape</th><th>Bytes</th><th>Labels</th></tr></thead><tbody>\n";
    for (const auto& r : rows) {
        const char* cls = r.severity == 2 ? "problem" : r.severity == 1 ? "warning" : "ok";
        o += "<tr class=\"";
        o += cls;
        o += "\" data-target=\"";
        html_escape(o, r.name);
        o += "\"><td><a href=\"/";
        html_escape(o, r.name);
        o += "/metrics\">";
        html_escape(o, r.name);
        o += "</a></td><td class=\"state\">";
        o += r.connected ? "connected" : "disconnected";
        if (!r.problem.empty()) {
            o += "<br><span class=\"muted\">";
            html_escape(o, r.problem);
            o += "</span>";
        }
        o += "</td><td>";
        if (r.connected) o += ago(now_ms, r.since_unix_ms) + "<br><span class=\"muted\">" + utc(r.since_unix_ms) + "</span>";
        o += "</td><td><code>";
        html_escape(o, r.client);
        if (r.port) o += "</code><br><span class=\"muted\">" + endpoint_text(r.address, r.port) + "</span><code>";
        o += "</code></td><td><code>";
        html_escape(o, r.fingerprint);
        o += "</code></td><td>";
        if (r.requests.last_unix_ms)
            o += std::to_string(r.requests.last_status) + " in " + std::to_string(r.requests.last_duration_ms) +
                 " ms<br><span class=\"muted\">" + ago(now_ms, r.requests.last_unix_ms) + "</span>";
        else
            o += "<span class=\"muted\">never</span>";
        o += "</td><td>" + human_bytes(r.requests.bytes_sent) + "</td><td>";
        for (const auto& [k, v] : r.labels) {
            o += "<span class=\"label\">";
            html_escape(o, k);
            o += "=";
            html_escape(o, v);
            o += "</span>";
        }
        o += "</td></tr>\n";
    }
    if (rows.empty())
        o += "<tr><td colspan=\"8\" class=\"muted\">No targets yet: declare one with <code>tunnelctl add NAME</code> "
             "or let a host self-register.</td></tr>\n";
    o += "</tbody></table>\n";
    invites_html(o, invites, now_ms);
    if (cluster) cluster_html(o, *cluster, rows, now_ms);
    unreadable_html(o, unreadable);
    o += "</body></html>\n";
    return o;
}

std::string render_status_json(const std::vector<StatusRow>& rows, std::int64_t now_ms, const Invites& invites,
                               const ClusterMetricsInput* cluster,
                               const std::vector<registry::UnreadableRecord>& unreadable) {
    using json::append_string;
    std::string o = "{\"generated\":";
    append_string(o, utc(now_ms));
    o += ",\"targets\":[";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        o += i ? ",\n" : "\n";
        o += "{\"name\":";
        append_string(o, r.name);
        o += std::string(",\"declared\":") + (r.declared ? "true" : "false");
        o += std::string(",\"state\":\"") + (r.connected ? "connected" : "disconnected") + "\"";
        o += ",\"problem\":";
        if (r.problem.empty()) o += "null";
        else append_string(o, r.problem);
        o += ",\"since\":";
        if (r.connected) append_string(o, utc(r.since_unix_ms));
        else o += "null";
        o += ",\"client\":";
        if (r.connected) append_string(o, r.client);
        else o += "null";
        o += ",\"fingerprint\":";
        if (r.connected) append_string(o, r.fingerprint);
        else o += "null";
        o += ",\"port\":" + (r.port ? std::to_string(r.port) : std::string("null"));
        o += ",\"address\":";
        if (r.port) append_string(o, ipv4_text(r.address));
        else o += "null";
        o += ",\"requests\":" + std::to_string(r.requests.requests);
        o += ",\"bytes\":" + std::to_string(r.requests.bytes_sent);
        o += ",\"last_scrape\":";
        if (r.requests.last_unix_ms) {
            o += "{\"time\":";
            append_string(o, utc(r.requests.last_unix_ms));
            o += ",\"status\":" + std::to_string(r.requests.last_status) +
                 ",\"duration_ms\":" + std::to_string(r.requests.last_duration_ms) + "}";
        } else {
            o += "null";
        }
        o += ",\"labels\":{";
        for (std::size_t j = 0; j < r.labels.size(); ++j) {
            if (j) o += ',';
            append_string(o, r.labels[j].first);
            o += ':';
            append_string(o, r.labels[j].second);
        }
        o += "}}";
    }
    o += rows.empty() ? "]" : "\n]";
    invites_json(o, invites, now_ms);
    if (cluster) cluster_json(o, *cluster, rows);
    unreadable_json(o, unreadable);
    o += "}\n";
    return o;
}

}  // namespace monitoring_proxy::tunnel
