#include "forward/tunnel_table.hpp"

namespace tunneld {

bool TunnelTable::port_taken(const std::string& target, std::uint16_t port,
                             const std::map<std::uint16_t, std::string>& fixed_ports) const {
    for (const auto& [name, owner] : live_)
        if (owner.port == port && name != target) return true;
    for (const auto& [id, claim] : reserved_)
        if (claim.port == port && claim.target != target) return true;
    // A declared fixed port belongs to its target, connected or not.
    auto fixed = fixed_ports.find(port);
    return fixed != fixed_ports.end() && fixed->second != target;
}

bool TunnelTable::address_taken(std::uint32_t address) const {
    for (const auto& [name, owner] : live_)
        if (owner.address == address) return true;
    for (const auto& [id, claim] : reserved_)
        if (claim.address == address) return true;
    return false;
}

std::optional<Claim> TunnelTable::reserve(const std::string& target, std::uint64_t forward_id,
                                          std::uint16_t fixed_port,
                                          const std::map<std::uint16_t, std::string>& fixed_ports,
                                          const std::set<std::uint16_t>& exclude, std::string& why) {
    std::lock_guard lock(mu_);
    auto address = addresses_.next([&](std::uint32_t a) { return address_taken(a); });
    if (!address) {
        why = "no free loopback address";
        return std::nullopt;
    }
    auto taken = [&](std::uint16_t p) { return exclude.count(p) != 0 || port_taken(target, p, fixed_ports); };
    std::optional<std::uint16_t> port;
    if (fixed_port != 0) {
        if (taken(fixed_port)) {
            why = "port " + std::to_string(fixed_port) + " is used by another tunnel";
            return std::nullopt;
        }
        port = fixed_port;
    } else {
        std::optional<std::uint16_t> preferred;
        if (auto it = live_.find(target); it != live_.end()) preferred = it->second.port;
        else if (auto last = last_port_.find(target); last != last_port_.end()) preferred = last->second;
        port = ports_.allocate(taken, [](std::uint16_t) { return true; }, preferred);
        if (!port) {
            why = "no free port in --port-range";
            return std::nullopt;
        }
    }
    Claim claim{target, forward_id, *address, *port};
    reserved_[forward_id] = claim;
    return claim;
}

void TunnelTable::release(const Claim& claim) {
    std::lock_guard lock(mu_);
    reserved_.erase(claim.forward_id);
}

std::optional<TunnelOwner> TunnelTable::install(const Claim& claim, TunnelOwner owner) {
    std::lock_guard lock(mu_);
    reserved_.erase(claim.forward_id);
    std::optional<TunnelOwner> previous;
    if (auto it = live_.find(claim.target); it != live_.end()) previous = it->second;
    live_[claim.target] = std::move(owner);
    last_port_[claim.target] = claim.port;
    return previous;
}

bool TunnelTable::remove_if_owner(const std::string& target, std::uint64_t forward_id) {
    std::lock_guard lock(mu_);
    auto it = live_.find(target);
    if (it == live_.end() || it->second.forward_id != forward_id) return false;
    live_.erase(it);
    return true;
}

std::optional<TunnelOwner> TunnelTable::owner(const std::string& target) {
    std::lock_guard lock(mu_);
    auto it = live_.find(target);
    return it == live_.end() ? std::nullopt : std::optional<TunnelOwner>(it->second);
}

}  // namespace tunneld
