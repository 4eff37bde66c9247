// Hands every forward a loopback address of its own (127.1.0.1 .. 127.254.255.254). nginx's keepalive cache
// and any other client that pools connections match on the socket address; with an address per forward
// lifetime, a connection relayed by an ended forward can never be taken for the forward that follows it on the
// same port. 127.0.0.0/16 is left alone: 127.0.0.1 holds the fixed-port listeners that hand-written nginx blocks
// use, and Debian puts other services there (127.0.0.53, 127.0.1.1).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace tunneld {

class LoopbackAddresses {
public:
    static constexpr std::uint32_t kFirst = 0x7f010001;  // 127.1.0.1
    static constexpr std::uint32_t kLast = 0x7ffefffe;   // 127.254.255.254

    // `start` is where the walk begins (tunneld picks it at random, so a restarted tunneld does not retrace
    // the previous process's sequence); values outside the pool are folded into it.
    explicit LoopbackAddresses(std::uint32_t start);

    // The next address in the walk that is a host address (last octet neither 0 nor 255) and not `in_use`;
    // nullopt only if every address is in use.
    std::optional<std::uint32_t> next(const std::function<bool(std::uint32_t)>& in_use);

    static bool usable(std::uint32_t address) noexcept;

private:
    std::uint32_t cursor_;
};

// A random start for the walk (getrandom).
std::uint32_t random_loopback_start();

}  // namespace tunneld
