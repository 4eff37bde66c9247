// Wall-clock time as the registry records it (milliseconds since the Unix epoch), for every process.
#pragma once

#include <chrono>
#include <cstdint>

namespace monitoring_proxy {

inline std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace monitoring_proxy
