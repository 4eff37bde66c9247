#include "forward/loopback_addresses.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <ctime>

namespace tunneld {

namespace {
constexpr std::uint32_t kSize = LoopbackAddresses::kLast - LoopbackAddresses::kFirst + 1;
}

LoopbackAddresses::LoopbackAddresses(std::uint32_t start)
    : cursor_(start >= kFirst && start <= kLast ? start : kFirst + start % kSize) {}

bool LoopbackAddresses::usable(std::uint32_t address) noexcept {
    const std::uint32_t last_octet = address & 0xff;
    return address >= kFirst && address <= kLast && last_octet != 0 && last_octet != 255;
}

std::optional<std::uint32_t> LoopbackAddresses::next(const std::function<bool(std::uint32_t)>& in_use) {
    for (std::uint32_t i = 0; i < kSize; ++i) {
        const std::uint32_t address = cursor_;
        cursor_ = cursor_ >= kLast ? kFirst : cursor_ + 1;
        if (usable(address) && !in_use(address)) return address;
    }
    return std::nullopt;
}

std::uint32_t random_loopback_start() {
    std::uint32_t value = 0;
    if (::getrandom(&value, sizeof value, 0) != sizeof value)
        value = static_cast<std::uint32_t>(std::time(nullptr)) ^ static_cast<std::uint32_t>(::getpid());
    return value;
}

}  // namespace tunneld
