#include "forward/port_allocator.hpp"

namespace tunneld {

std::optional<std::uint16_t> PortAllocator::allocate(const std::function<bool(std::uint16_t)>& in_use,
                                                     const std::function<bool(std::uint16_t)>& try_bind,
                                                     std::optional<std::uint16_t> preferred) {
    if (preferred && range_.contains(*preferred) && !in_use(*preferred) && try_bind(*preferred)) return preferred;
    std::uint32_t size = std::uint32_t{range_.hi} - range_.lo + 1;
    for (std::uint32_t i = 0; i < size; ++i) {
        auto port = static_cast<std::uint16_t>(cursor_);
        cursor_ = cursor_ >= range_.hi ? range_.lo : cursor_ + 1;
        if (in_use(port)) continue;
        if (try_bind(port)) return port;
    }
    return std::nullopt;
}

}  // namespace tunneld
