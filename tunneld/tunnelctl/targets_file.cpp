#include "targets_file.hpp"

#include "monitoring_proxy/names.hpp"

#include <charconv>
#include <map>

namespace monitoring_proxy::tunnelctl {
namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}
}  // namespace

namespace {

// One non-empty line "HOST:PORT NAME": empty when it reads, else what is wrong with it.
std::string parse_entry(std::string_view line, std::string_view& name, std::uint16_t& port) {
    auto space = line.find_first_of(" \t");
    if (space == std::string_view::npos) return "expected \"HOST:PORT NAME\" (for example \"localhost:20001 web1\")";
    std::string_view address = line.substr(0, space);
    name = trim(line.substr(space));
    if (name.find_first_of(" \t") != std::string_view::npos)
        return "expected \"HOST:PORT NAME\", found more than two fields";
    auto colon = address.rfind(':');
    if (colon == std::string_view::npos) return "\"" + std::string(address) + "\" has no port (expected HOST:PORT)";
    std::string_view host = address.substr(0, colon), port_text = address.substr(colon + 1);
    if (host != "localhost" && host != "127.0.0.1" && host != "[::1]" && host != "::1")
        return "host \"" + std::string(host) +
               "\" is not loopback: tunnels always listen on 127.0.0.1, so use localhost:PORT";
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || value == 0 || value > 65535)
        return "invalid port \"" + std::string(port_text) + "\" (expected 1-65535)";
    port = static_cast<std::uint16_t>(value);
    return check_target_name(name);
}

}  // namespace

TargetsFile parse_targets_file(std::string_view text, std::string_view file_name) {
    TargetsFile out;
    std::map<std::string, std::size_t, std::less<>> name_line;
    std::map<std::uint16_t, std::size_t> port_line;
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        line = trim(line);
        if (line.empty()) continue;

        const std::string where = std::string(file_name) + ":" + std::to_string(line_no) + ": ";
        std::string_view name;
        std::uint16_t port = 0;
        if (auto e = parse_entry(line, name, port); !e.empty()) {
            out.errors.push_back(where + e);
        } else if (auto it = name_line.find(name); it != name_line.end()) {
            out.errors.push_back(where + "target \"" + std::string(name) + "\" already declared on line " +
                                 std::to_string(it->second));
        } else if (auto at = port_line.find(port); at != port_line.end()) {
            out.errors.push_back(where + "port " + std::to_string(port) + " already used on line " +
                                 std::to_string(at->second));
        } else {
            name_line.emplace(std::string(name), line_no);
            port_line.emplace(port, line_no);
            out.entries.push_back({line_no, std::string(name), port});
        }
    }
    return out;
}

}  // namespace monitoring_proxy::tunnelctl
