#include "discovery.hpp"

#include "monitoring_proxy/json.hpp"
#include "monitoring_proxy/names.hpp"

#include <algorithm>

namespace monitoring_proxy::tunnel {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

}  // namespace

bool matches(const registry::SnapshotEntry& e, const LabelFilters& filters) {
    if (!e.target) return false;
    return std::all_of(filters.begin(), filters.end(), [&](const auto& f) {
        if (f.first == "tunnel") return e.name == f.second;
        return std::any_of(e.target->labels.begin(), e.target->labels.end(),
                           [&](const auto& l) { return l.first == f.first && l.second == f.second; });
    });
}

std::optional<LabelFilters> parse_label_filters(std::string_view query, std::string& error) {
    LabelFilters out;
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view arg = query.substr(0, amp);
        query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
        if (!arg.starts_with("label=")) continue;
        auto decoded = percent_decode(arg.substr(6));
        if (!decoded) {
            error = "malformed percent-encoding in label filter";
            return std::nullopt;
        }
        auto eq = decoded->find('=');
        if (eq == std::string::npos) {
            error = "label filter must be label=NAME=VALUE";
            return std::nullopt;
        }
        std::string name = decoded->substr(0, eq);
        if (name != "tunnel")
            if (auto e = check_label_name(name); !e.empty()) {
                error = e;
                return std::nullopt;
            }
        out.emplace_back(std::move(name), decoded->substr(eq + 1));
    }
    return out;
}

std::string render_discovery(const std::vector<registry::SnapshotEntry>& entries, const DiscoveryOptions& options) {
    std::string out = "[";
    bool first = true;
    for (const auto& e : entries) {
        if (!e.target || !matches(e, options.filters)) continue;
        const auto& t = *e.target;
        out += first ? "\n" : ",\n";
        first = false;
        out += "{\"targets\":[";
        json::append_string(out, options.address);
        out += "],\"labels\":{\"__metrics_path__\":";
        json::append_string(out, "/" + e.name + (t.metrics_path.empty() ? "/metrics" : t.metrics_path));
        out += ",\"tunnel\":";
        json::append_string(out, e.name);
        // Every target has the proxy's address; an instance label per host keeps series apart and readable.
        const bool own_instance = std::any_of(t.labels.begin(), t.labels.end(), [](auto& l) { return l.first == "instance"; });
        if (!own_instance) {
            out += ",\"instance\":";
            json::append_string(out, e.name);
        }
        for (const auto& [k, v] : t.labels) {
            if (k == "tunnel") continue;  // the proxy's own label wins
            out += ',';
            json::append_string(out, k);
            out += ':';
            json::append_string(out, v);
        }
        out += "}}";
    }
    out += first ? "]\n" : "\n]\n";
    return out;
}

}  // namespace monitoring_proxy::tunnel
