#include "monitoring_proxy/names.hpp"

#include <cstdint>

namespace monitoring_proxy {
namespace {
bool lower_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool label_start(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool label_char(char c) noexcept { return label_start(c) || (c >= '0' && c <= '9'); }

std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s.substr(0, 80)) {
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > 80) out += "...";
    return out + "\"";
}

// Is `s` well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF)?
bool valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        std::size_t extra;
        std::uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c >> 5) == 0x6) {
            extra = 1, cp = c & 0x1f;
        } else if ((c >> 4) == 0xe) {
            extra = 2, cp = c & 0x0f;
        } else if ((c >> 3) == 0x1e) {
            extra = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (s.size() - i <= extra) return false;
        for (std::size_t k = 1; k <= extra; ++k) {
            const unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc >> 6) != 0x2) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += extra + 1;
    }
    return true;
}
}  // namespace

bool valid_target_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > kMaxTargetNameLength || !lower_alnum(name[0])) return false;
    for (char c : name)
        if (!lower_alnum(c) && c != '.' && c != '_' && c != '-') return false;
    return true;
}

std::string check_target_name(std::string_view name) {
    if (valid_target_name(name)) return {};
    return "invalid target name " + quoted(name) + ": names must match " + kTargetNameRule;
}

bool valid_node_id(std::string_view id) noexcept { return valid_target_name(id); }

std::string check_node_id(std::string_view id) {
    if (valid_node_id(id)) return {};
    return "invalid node id " + quoted(id) + ": node ids must match " + kTargetNameRule;
}

bool valid_label_name(std::string_view name) noexcept {
    if (name.empty() || !label_start(name[0])) return false;
    if (name.size() >= 2 && name[0] == '_' && name[1] == '_') return false;
    for (char c : name)
        if (!label_char(c)) return false;
    return true;
}

std::string check_label_name(std::string_view name) {
    if (valid_label_name(name)) return {};
    if (name.size() >= 2 && name.substr(0, 2) == "__")
        return "invalid label name " + quoted(name) + ": names starting with \"__\" are reserved by Prometheus";
    return "invalid label name " + quoted(name) + ": Prometheus label names must match [a-zA-Z_][a-zA-Z0-9_]*";
}

std::string check_label_value(std::string_view value) {
    if (value.size() > 1024) return "label value too long (" + std::to_string(value.size()) + " bytes, at most 1024)";
    if (!valid_utf8(value)) return "label value " + quoted(value) + " is not valid UTF-8";
    return {};
}

std::string check_path(std::string_view path) {
    auto bad = [&](const char* why) { return "invalid path " + quoted(path) + ": " + why; };
    if (path.empty() || path[0] != '/') return bad("must start with '/'");
    if (path.size() > 1024) return bad("longer than 1024 characters");
    for (unsigned char c : path) {
        if (c <= 0x20 || c >= 0x7f) return bad("only printable ASCII without spaces is allowed");
        if (c == '?' || c == '#' || c == '%') return bad("'?', '#' and '%' are not allowed");
    }
    if (path.find("/../") != std::string_view::npos || path.find("/./") != std::string_view::npos ||
        path.ends_with("/..") || path.ends_with("/.") || path.find("//") != std::string_view::npos)
        return bad("no '.', '..' or empty segments");
    return {};
}

}  // namespace monitoring_proxy
