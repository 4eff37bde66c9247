// Text form of the IPv4 loopback addresses tunnel records carry (host byte order).
#pragma once

#include <cstdint>
#include <string>

namespace monitoring_proxy {

inline std::string ipv4_text(std::uint32_t address) {
    return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
           std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff);
}

inline std::string endpoint_text(std::uint32_t address, std::uint16_t port) {
    return ipv4_text(address) + ":" + std::to_string(port);
}

}  // namespace monitoring_proxy
