// Picks a loopback port for a tunnel inside --port-range. Pure logic: "in use by us" and "bind it" are passed in.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "policy/forward_policy.hpp"

namespace tunneld {

class PortAllocator {
public:
    explicit PortAllocator(PortRange range) : range_(range), cursor_(range.lo) {}

    // Tries `preferred` first (a target's previous port keeps URLs and dashboards stable), then walks the range
    // round-robin from where the last allocation stopped, skipping ports `in_use`, until `try_bind` succeeds or
    // every port was tried once.
    std::optional<std::uint16_t> allocate(const std::function<bool(std::uint16_t)>& in_use,
                                          const std::function<bool(std::uint16_t)>& try_bind,
                                          std::optional<std::uint16_t> preferred = std::nullopt);

private:
    PortRange range_;
    std::uint32_t cursor_;
};

}  // namespace tunneld
