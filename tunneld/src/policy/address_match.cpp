#include "policy/address_match.hpp"

#include <arpa/inet.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cstring>

namespace tunneld {
namespace {

struct ParsedAddress {
    int family = 0;  // AF_INET or AF_INET6, 0 when not an address
    std::array<unsigned char, 16> bytes{};
};

ParsedAddress parse_address(std::string_view text) {
    ParsedAddress out;
    if (text.empty() || text.size() > 45) return out;
    char buf[64];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    if (inet_pton(AF_INET, buf, out.bytes.data()) == 1) {
        out.family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, out.bytes.data()) == 1) {
        out.family = AF_INET6;
    }
    return out;
}

struct Cidr {
    ParsedAddress network;
    int prefix = -1;
};

// "addr/len" -> Cidr with prefix >= 0, or prefix -1 when malformed.
Cidr parse_cidr(std::string_view text) {
    Cidr out;
    auto slash = text.find('/');
    if (slash == std::string_view::npos) return out;
    out.network = parse_address(text.substr(0, slash));
    if (out.network.family == 0) return out;
    auto len_text = text.substr(slash + 1);
    int len = -1;
    auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    int max = out.network.family == AF_INET ? 32 : 128;
    if (ec != std::errc{} || ptr != len_text.data() + len_text.size() || len < 0 || len > max) return out;
    // OpenSSH refuses networks with host bits set ("10.0.0.1/8"): they are almost always a typo.
    int full = len / 8, rest = len % 8;
    int total = out.network.family == AF_INET ? 4 : 16;
    for (int i = full; i < total; ++i) {
        unsigned char mask = (i == full && rest) ? static_cast<unsigned char>(0xff >> rest) : 0xff;
        if (out.network.bytes[i] & mask) return out;
    }
    out.prefix = len;
    return out;
}

bool cidr_contains(const Cidr& cidr, const ParsedAddress& addr) {
    if (cidr.prefix < 0 || addr.family != cidr.network.family) return false;
    int full = cidr.prefix / 8, rest = cidr.prefix % 8;
    if (std::memcmp(cidr.network.bytes.data(), addr.bytes.data(), full) != 0) return false;
    if (rest == 0) return true;
    unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
    return (cidr.network.bytes[full] & mask) == (addr.bytes[full] & mask);
}

}  // namespace

bool wildcard_match(std::string_view pattern, std::string_view text) noexcept {
    // Iterative glob with single backtrack point: linear-ish, no recursion, safe on hostile input.
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || lower(pattern[p]) == lower(text[t]))) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

std::string check_host_pattern(std::string_view entry) {
    if (!entry.empty() && entry.front() == '!') entry.remove_prefix(1);
    if (entry.empty()) return "empty pattern";
    for (char c : entry) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr(".-_:*?/[]%", c) != nullptr)) {
            return "invalid character in host pattern \"" + std::string(entry) + "\"";
        }
    }
    if (entry.find('/') != std::string_view::npos && parse_cidr(entry).prefix < 0) {
        return "invalid CIDR block \"" + std::string(entry) + "\"";
    }
    return {};
}

std::vector<std::string> split_pattern_list(std::string_view list) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= list.size()) {
        auto comma = list.find(',', start);
        if (comma == std::string_view::npos) comma = list.size();
        out.emplace_back(list.substr(start, comma - start));
        start = comma + 1;
    }
    return out;
}

bool address_matches_patterns(const std::vector<std::string>& entries, std::string_view address) {
    ParsedAddress addr = parse_address(address);
    bool allowed = false;
    for (const auto& raw : entries) {
        std::string_view entry = raw;
        bool negated = !entry.empty() && entry.front() == '!';
        if (negated) entry.remove_prefix(1);
        bool match = entry.find('/') != std::string_view::npos ? cidr_contains(parse_cidr(entry), addr)
                                                               : wildcard_match(entry, address);
        if (match && negated) return false;
        if (match) allowed = true;
    }
    return allowed;
}

}  // namespace tunneld
