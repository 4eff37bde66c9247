// The tcpip-forward decision as a pure function: given what the client asked, what its key may do and what the
// registry declares, which target the forward serves, on which port, or why it is refused. No sockets, no
// registry handles: lookups are passed in, so every rule is unit-tested.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "monitoring_proxy/registry_schema.hpp"

namespace tunneld {

struct ForwardRequest {
    std::string bind_address;  // as sent: "" / "localhost" / "0.0.0.0" / a target name
    std::uint32_t bind_port = 0;
};

// What an authenticated key may do.
struct KeyGrant {
    std::string fingerprint;
    std::vector<std::string> bound_targets;  // registry targets listing this key
    bool from_authorized_keys = false;       // listed in --authorized-keys (shared-key model)
    std::vector<std::string> permitlisten;   // from that entry; empty: no restriction
    bool forwarding_allowed = true;          // false after restrict / no-port-forwarding
};

struct PortRange {
    std::uint16_t lo = 20000;
    std::uint16_t hi = 29999;
    bool contains(std::uint32_t p) const noexcept { return p >= lo && p <= hi; }
};

struct PolicyConfig {
    PortRange range;
    bool allow_undeclared = false;
};

using TargetLookup = std::function<std::optional<monitoring_proxy::registry::TargetRecord>(std::string_view)>;
// Name of the declared target whose fixed port is `port`, if any.
using FixedPortLookup = std::function<std::optional<std::string>(std::uint16_t)>;

struct ForwardDecision {
    bool allowed = false;
    std::string target;
    std::uint16_t fixed_port = 0;   // 0: allocate one in the range
    bool self_register = false;     // declare `target` bound to this key (--allow-undeclared)
    bool takeover_attempt = false;  // refused because another key owns the target
    std::string reason;             // refusal counter label: forwards_refused_total{reason="..."}
    std::string message;            // human-readable refusal, for the log
};

// Is this bind address an address (numbered or port-0 forward) rather than a target name?
bool is_address_like(std::string_view bind_address) noexcept;

ForwardDecision decide_forward(const ForwardRequest& request, const KeyGrant& key, const PolicyConfig& config,
                               const TargetLookup& lookup_target, const FixedPortLookup& lookup_fixed_port);

}  // namespace tunneld
