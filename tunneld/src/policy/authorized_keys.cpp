#include "policy/authorized_keys.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <optional>

#include "policy/address_match.hpp"

namespace tunneld {
namespace {

constexpr std::size_t kMaxLineLength = 16 * 1024;

constexpr std::array<std::string_view, 5> kSupportedTypes = {"ssh-ed25519", "ecdsa-sha2-nistp256",
                                                             "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"};

// Types OpenSSH knows but tunneld does not authenticate with: recognised so the line is not misread as options.
constexpr std::array<std::string_view, 4> kKnownUnsupportedTypes = {
    "ssh-dss", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-xmss@openssh.com"};

bool known_key_type(std::string_view t) {
    for (auto s : kSupportedTypes)
        if (t == s) return true;
    for (auto s : kKnownUnsupportedTypes)
        if (t == s) return true;
    return t.size() > 21 && t.substr(t.size() - 21) == "-cert-v01@openssh.com";
}

bool is_space(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (is_space(s.front()) || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (is_space(s.back()) || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

std::string_view next_token(std::string_view& s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    std::size_t n = 0;
    while (n < s.size() && !is_space(s[n])) ++n;
    auto tok = s.substr(0, n);
    s.remove_prefix(n);
    return tok;
}

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.empty() || in.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; ++j) {
            char c = in[i + j];
            if (c == '=') {
                if (i + 4 != in.size() || j < 2) return std::nullopt;
                v[j] = 0;
                ++pad;
            } else {
                if (pad) return std::nullopt;
                v[j] = base64_value(c);
                if (v[j] < 0) return std::nullopt;
            }
        }
        std::uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out.push_back(static_cast<char>(n >> 16));
        if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
        if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
    }
    return out;
}

// The blob's first field is the key type as an SSH string; it must agree with the type written on the line.
std::string check_blob(std::string_view type, std::string_view base64) {
    auto blob = base64_decode(base64);
    if (!blob) return "key data is not valid base64";
    if (blob->size() < 4) return "key data too short";
    auto b = reinterpret_cast<const unsigned char*>(blob->data());
    std::uint32_t len = (std::uint32_t{b[0]} << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
    if (len > blob->size() - 4) return "key data truncated";
    if (std::string_view(blob->data() + 4, len) != type) {
        return "key data is a \"" + std::string(blob->data() + 4, len) + "\" key, line says \"" + std::string(type) +
               "\"";
    }
    return {};
}

struct Option {
    std::string name;
    std::optional<std::string> value;
};

// Parses the leading options field: name[="value"] separated by commas, values double-quoted with \" escapes.
// Advances `rest` past the field. Returns an error text, or empty.
std::string parse_options(std::string_view& rest, std::vector<Option>& out) {
    std::size_t i = 0;
    while (true) {
        std::size_t start = i;
        while (i < rest.size() && rest[i] != '=' && rest[i] != ',' && !is_space(rest[i])) ++i;
        Option opt{std::string(rest.substr(start, i - start)), std::nullopt};
        if (opt.name.empty()) return "empty option name";
        if (i < rest.size() && rest[i] == '=') {
            ++i;
            if (i >= rest.size() || rest[i] != '"') return "option " + opt.name + "= needs a double-quoted value";
            ++i;
            std::string value;
            bool closed = false;
            while (i < rest.size()) {
                char c = rest[i++];
                if (c == '\\' && i < rest.size() && rest[i] == '"') {
                    value.push_back('"');
                    ++i;
                } else if (c == '"') {
                    closed = true;
                    break;
                } else {
                    value.push_back(c);
                }
            }
            if (!closed) return "unterminated quoted value of option " + opt.name;
            opt.value = std::move(value);
        }
        out.push_back(std::move(opt));
        if (i < rest.size() && rest[i] == ',') {
            ++i;
            continue;
        }
        if (i < rest.size() && !is_space(rest[i])) return "unexpected character after option " + out.back().name;
        break;
    }
    rest.remove_prefix(i);
    return {};
}

std::string check_permitlisten(std::string_view v) {
    auto colon = v.rfind(':');
    auto port = colon == std::string_view::npos ? v : v.substr(colon + 1);
    if (colon != std::string_view::npos && colon == 0) return "permitlisten host is empty";
    if (port == "*") return {};
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || p != port.data() + port.size() || value > 65535) {
        return "permitlisten=\"" + std::string(v) + "\": port must be a number 0-65535 or *";
    }
    return {};
}

// Applies options to `key`; returns an error text for anything not understood or malformed.
std::string apply_options(const std::vector<Option>& options, AuthorizedKey& key) {
    bool restricted = false, forwarding_off = false, forwarding_on = false, have_from = false;
    for (const auto& o : options) {
        const std::string& n = o.name;
        auto flag_only = [&]() -> std::string { return o.value ? "option " + n + " takes no value" : std::string{}; };
        if (n == "from") {
            if (!o.value || o.value->empty()) return "from= needs a pattern list";
            if (have_from) return "from= given twice";
            have_from = true;
            for (auto& e : split_pattern_list(*o.value)) {
                if (auto err = check_host_pattern(e); !err.empty()) return "from=: " + err;
                key.from.push_back(e);
            }
        } else if (n == "permitlisten") {
            if (!o.value) return "permitlisten= needs a value";
            if (auto err = check_permitlisten(*o.value); !err.empty()) return err;
            key.permitlisten.push_back(*o.value);
        } else if (n == "restrict") {
            if (auto e = flag_only(); !e.empty()) return e;
            restricted = true;
        } else if (n == "no-port-forwarding") {
            if (auto e = flag_only(); !e.empty()) return e;
            forwarding_off = true;
        } else if (n == "port-forwarding") {
            if (auto e = flag_only(); !e.empty()) return e;
            forwarding_on = true;
        } else if (n == "no-pty" || n == "pty" || n == "no-agent-forwarding" || n == "agent-forwarding" ||
                   n == "no-X11-forwarding" || n == "X11-forwarding" || n == "no-user-rc" || n == "user-rc") {
            // tunneld never offers these; accepting the option keeps OpenSSH-shared files usable.
            if (auto e = flag_only(); !e.empty()) return e;
        } else {
            return "unsupported option \"" + n + "\"";
        }
    }
    // restrict keeps permitlisten'd forwards usable: for tunneld a key without any forward would be pointless,
    // and permitlisten is the explicit statement of what the key may do.
    if (forwarding_off)
        key.forwarding_allowed = false;
    else if (restricted)
        key.forwarding_allowed = forwarding_on || !key.permitlisten.empty();
    return {};
}

}  // namespace

bool supported_key_type(std::string_view type) noexcept {
    for (auto s : kSupportedTypes)
        if (type == s) return true;
    return false;
}

bool permitlisten_allows(std::string_view entry, std::string_view bind_address, std::uint32_t bind_port) {
    auto colon = entry.rfind(':');
    std::string_view host = colon == std::string_view::npos ? std::string_view{} : entry.substr(0, colon);
    std::string_view port = colon == std::string_view::npos ? entry : entry.substr(colon + 1);
    if (port != "*") {
        unsigned value = 0;
        auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc{} || p != port.data() + port.size() || value != bind_port) return false;
    }
    return host.empty() || host == "*" || wildcard_match(host, bind_address);
}

namespace {

// One non-comment line: the key, or why the line is skipped.
std::string parse_key_line(std::string_view line, AuthorizedKey& key) {
    std::string_view rest = line;
    std::string_view probe = rest;
    std::string_view first = next_token(probe);
    if (!known_key_type(first)) {
        std::vector<Option> options;
        if (auto err = parse_options(rest, options); !err.empty()) return err;
        if (auto err = apply_options(options, key); !err.empty()) return err;
    }
    std::string_view type = next_token(rest);
    std::string_view blob = next_token(rest);
    if (type.empty()) return "missing key type";
    if (!known_key_type(type)) return "unknown key type \"" + std::string(type.substr(0, 64)) + "\"";
    if (!supported_key_type(type))
        return "key type " + std::string(type) + " is not accepted (use ed25519, ecdsa or rsa)";
    if (blob.empty()) return "missing key data";
    if (auto err = check_blob(type, blob); !err.empty()) return err;
    key.type = std::string(type);
    key.blob_base64 = std::string(blob);
    key.comment = std::string(trim(rest));
    return {};
}

}  // namespace

AuthorizedKeys parse_authorized_keys(std::string_view text, std::string_view file_name) {
    AuthorizedKeys result;
    std::size_t line_no = 0;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view raw = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++line_no;
        auto report = [&](const std::string& why) {
            result.errors.push_back(std::string(file_name) + ":" + std::to_string(line_no) + ": " + why +
                                    "; line skipped");
        };
        if (raw.size() > kMaxLineLength) {
            report("line longer than " + std::to_string(kMaxLineLength) + " bytes");
            continue;
        }
        std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') continue;
        if (line.find('\0') != std::string_view::npos) {
            report("NUL byte in line");
            continue;
        }
        AuthorizedKey key;
        key.line = line_no;
        if (auto err = parse_key_line(line, key); !err.empty()) {
            report(err);
            continue;
        }
        result.keys.push_back(std::move(key));
    }
    return result;
}

}  // namespace tunneld
