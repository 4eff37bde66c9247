// Text form of the IPv4 loopback addresses tunnel records carry (host byte order).
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace monitoring_proxy {

inline std::string ipv4_text(std::uint32_t address) {
    return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
           std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff);
}

inline std::string endpoint_text(std::uint32_t address, std::uint16_t port) {
    return ipv4_text(address) + ":" + std::to_string(port);
}

struct Ipv4Endpoint {
    std::uint32_t address = 0;  // host byte order
    std::uint16_t port = 0;
};

// "a.b.c.d:port" (dotted decimal, port 1..65535) -> its parts; nullopt for anything else (names included: the
// cluster's HTTP endpoints are resolved by their writer, never on the request path).
inline std::optional<Ipv4Endpoint> parse_ipv4_endpoint(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto number = [](std::string_view digits, unsigned max, unsigned& out) {
        if (digits.empty() || digits.size() > 5) return false;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
        return ec == std::errc() && end == digits.data() + digits.size() && out <= max;
    };
    Ipv4Endpoint e;
    std::string_view host = text.substr(0, colon);
    for (int i = 0; i < 4; ++i) {
        const auto dot = i < 3 ? host.find('.') : host.size();
        unsigned octet = 0;
        if (dot == std::string_view::npos || !number(host.substr(0, dot), 255, octet)) return std::nullopt;
        e.address = (e.address << 8) | octet;
        host.remove_prefix(i < 3 ? dot + 1 : dot);
    }
    unsigned port = 0;
    if (!number(text.substr(colon + 1), 65535, port) || port == 0) return std::nullopt;
    e.port = static_cast<std::uint16_t>(port);
    return e;
}

}  // namespace monitoring_proxy
