// Minimal JSON output helpers (tunnelctl --json, discovery, status): escaping is the only subtle part.
#pragma once

#include <string>
#include <string_view>

namespace monitoring_proxy::json {

// Appends `s` as a JSON string literal, quotes included. Control characters are escaped (\u00XX); other bytes
// pass through, so `s` must be UTF-8 (the registry validates what it stores).
void append_string(std::string& out, std::string_view s);
inline std::string quote(std::string_view s) {
    std::string out;
    append_string(out, s);
    return out;
}

}  // namespace monitoring_proxy::json
