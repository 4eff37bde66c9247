// One forward request on its way from "allowed" to "recorded", in the order the design asks for: reserve an
// address and port, bind, watch, record. Each step that fails leaves the reason in failure(); the destructor
// gives back whatever the request took (the reservation, the listening sockets) unless take_listeners() kept it.
// No lock is held across a system call: the table's mutex only around its lookups, the registry's only around
// the record (which also installs the tunnel in the table, so both always name the same forward).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "forward/registry_gateway.hpp"
#include "forward/tunnel_table.hpp"

namespace tunneld {

// bind() + listen() on address:port, non-blocking; `share` sets SO_REUSEPORT. -1 with errno set on failure.
using Binder = std::function<int(std::uint32_t address, std::uint16_t port, bool share)>;

struct ForwardIdentity {
    std::string target;
    std::uint64_t forward_id = 0;
    std::uint16_t fixed_port = 0;  // 0: a port from the range
    std::string client;            // for the tunnel record
    std::string fingerprint;
    bool self_register = false;    // declare target bound to this key (--allow-undeclared)
};

class ForwardReservation {
public:
    ForwardReservation(TunnelTable& table, ForwardIdentity identity) : table_(table), id_(std::move(identity)) {}
    ~ForwardReservation();
    ForwardReservation(const ForwardReservation&) = delete;
    ForwardReservation& operator=(const ForwardReservation&) = delete;

    // Reserve and bind: the forward's own address:port, plus 127.0.0.1:port for a declared fixed port. A port
    // someone else (outside tunneld) holds is skipped for the next one in the range.
    bool bind(const std::map<std::uint16_t, std::string>& fixed_ports, const Binder& binder);
    // Registers each listening socket with the worker's event loop.
    bool watch(const std::function<bool(int fd, std::string& failure)>& add);
    // Writes the tunnel record (and the self-registered target) and installs the tunnel in the table.
    bool record(RegistryGateway& registry, std::uint64_t instance_id, std::int64_t now_ms, TunnelOwner owner);

    // After record(): the owner replaced (a takeover), if any.
    const std::optional<TunnelOwner>& previous() const noexcept { return previous_; }
    const Claim& claim() const noexcept { return *claim_; }
    // Hands the listening sockets to the forward; nothing is rolled back from then on.
    void take_listeners(int& listen_fd, int& fixed_fd) noexcept;

    const std::string& failure() const noexcept { return failure_; }
    const char* refusal() const noexcept { return refusal_; }  // forwards_refused_total reason

private:
    void close_listeners() noexcept;

    TunnelTable& table_;
    ForwardIdentity id_;
    std::optional<Claim> claim_;
    bool installed_ = false;
    int listen_fd_ = -1, fixed_fd_ = -1;
    std::optional<TunnelOwner> previous_;
    std::string failure_;
    const char* refusal_ = "bind_failed";
};

}  // namespace tunneld
