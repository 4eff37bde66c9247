// One tcpip-forward: a listener on a loopback address of its own serving a target (plus 127.0.0.1:port for a
// declared fixed port, which hand-written nginx blocks use).
#pragma once

#include <cstdint>
#include <string>

#include "session/pollable.hpp"

namespace tunneld {

struct Session;

struct Forward : Pollable {
    Forward() : Pollable(Kind::kListener) {}
    std::uint64_t id = 0;
    Session* session = nullptr;
    std::string target;
    std::uint32_t address = 0;  // host byte order; what the registry records
    std::uint16_t port = 0;
    std::string requested_address;  // echoed in forwarded-tcpip opens: OpenSSH matches on it
    std::uint32_t requested_port = 0;
    std::uint32_t channel_port = 0;  // requested_port, or the allocated port for -R ...:0:...
    int listen_fd = -1;  // address:port
    int fixed_fd = -1;   // 127.0.0.1:port, for a declared fixed port only
    std::uint64_t connects = 0;
    bool accept_paused = false;  // accept ran out of descriptors: not watched until the next timer tick
    Clock::time_point paused_since;
};

}  // namespace tunneld
