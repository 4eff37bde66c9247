#include "forward/wire_port.hpp"

#include <cstring>

namespace tunneld {

std::optional<std::uint32_t> port_after_pointer(const void* object, std::size_t size, const void* pointer,
                                                std::uint16_t low16) noexcept {
    if (object == nullptr || pointer == nullptr) return std::nullopt;
    const auto* bytes = static_cast<const unsigned char*>(object);
    constexpr std::size_t kStep = alignof(void*);
    for (std::size_t at = 0; at + sizeof(void*) + sizeof(std::uint32_t) <= size; at += kStep) {
        const void* candidate = nullptr;
        std::memcpy(&candidate, bytes + at, sizeof candidate);
        if (candidate != pointer) continue;
        std::uint32_t port = 0;
        std::memcpy(&port, bytes + at + sizeof(void*), sizeof port);
        if ((port & 0xffff) != low16) return std::nullopt;
        return port;
    }
    return std::nullopt;
}

}  // namespace tunneld
