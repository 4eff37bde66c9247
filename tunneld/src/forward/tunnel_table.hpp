// Which forward of this tunneld serves each target, and which loopback addresses and ports forward requests
// have set aside on their way to becoming one. Shared by all workers; its mutex is held only for these lookups
// and updates, never across a system call.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "policy/forward_policy.hpp"
#include "forward/loopback_addresses.hpp"
#include "forward/port_allocator.hpp"

namespace tunneld {

class Worker;

// Who serves a live tunnel in this process.
struct TunnelOwner {
    Worker* worker = nullptr;
    std::uint64_t session_id = 0;
    std::uint64_t forward_id = 0;
    std::uint32_t address = 0;
    std::uint16_t port = 0;
    std::string client;
};

// An address and port set aside for one forward request.
struct Claim {
    std::string target;
    std::uint64_t forward_id = 0;
    std::uint32_t address = 0;
    std::uint16_t port = 0;
};

class TunnelTable {
public:
    TunnelTable(PortRange range, std::uint32_t address_start) : ports_(range), addresses_(address_start) {}

    // Sets aside an address of its own and a port for a new forward of `target`: `fixed_port` when not 0, else
    // the target's previous port when free, else the next free one in the range. A port is taken when another
    // target's tunnel or reservation has it, when it is another target's declared fixed port (`fixed_ports`,
    // port -> target), or when it is in `exclude` (ports this request could not bind). nullopt: `why` says why.
    std::optional<Claim> reserve(const std::string& target, std::uint64_t forward_id, std::uint16_t fixed_port,
                                 const std::map<std::uint16_t, std::string>& fixed_ports,
                                 const std::set<std::uint16_t>& exclude, std::string& why);
    void release(const Claim& claim);
    // The claim becomes `target`'s live tunnel. Returns the owner it replaces (a takeover), if any.
    std::optional<TunnelOwner> install(const Claim& claim, TunnelOwner owner);
    // Removes the tunnel of `target` if `forward_id` still serves it; false when a newer forward took it over.
    bool remove_if_owner(const std::string& target, std::uint64_t forward_id);

    std::optional<TunnelOwner> owner(const std::string& target);

private:
    bool port_taken(const std::string& target, std::uint16_t port,
                    const std::map<std::uint16_t, std::string>& fixed_ports) const;
    bool address_taken(std::uint32_t address) const;

    std::mutex mu_;
    std::map<std::string, TunnelOwner> live_;
    std::map<std::uint64_t, Claim> reserved_;        // by forward id
    std::map<std::string, std::uint16_t> last_port_;  // reconnects keep their port
    PortAllocator ports_;
    LoopbackAddresses addresses_;
};

}  // namespace tunneld
