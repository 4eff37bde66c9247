#include "policy/forward_policy.hpp"

#include <algorithm>

#include "policy/authorized_keys.hpp"
#include "monitoring_proxy/names.hpp"

namespace tunneld {
namespace {

ForwardDecision refuse(std::string reason, std::string message) {
    ForwardDecision d;
    d.reason = std::move(reason);
    d.message = std::move(message);
    return d;
}

// May `key` serve the declared `target`? Fills the decision either way.
ForwardDecision decide_declared(const std::string& name, const monitoring_proxy::registry::TargetRecord& record,
                                const KeyGrant& key, const PortRange& range) {
    const auto& fps = record.key_fingerprints;
    bool bound_to_this = std::find(fps.begin(), fps.end(), key.fingerprint) != fps.end();
    if (!fps.empty() && !bound_to_this) {
        ForwardDecision d = refuse("other_key", "target \"" + name + "\" is bound to another key");
        d.takeover_attempt = true;
        return d;
    }
    if (fps.empty() && !key.from_authorized_keys) {
        // A key known only through the registry may serve only the targets bound to it; unbound targets are the
        // shared-key model of authorized_keys keys (which keep that power even after self-registering a name).
        return refuse("not_bound", "this key may serve only its bound targets, not \"" + name + "\"");
    }
    if (record.fixed_port != 0 && !range.contains(record.fixed_port)) {
        return refuse("port_range", "target \"" + name + "\" has fixed port " + std::to_string(record.fixed_port) +
                                        " outside --port-range " + std::to_string(range.lo) + "-" +
                                        std::to_string(range.hi));
    }
    ForwardDecision d;
    d.allowed = true;
    d.target = name;
    d.fixed_port = record.fixed_port;
    return d;
}

}  // namespace

bool is_address_like(std::string_view a) noexcept {
    if (a.empty() || a == "*" || a == "localhost") return true;
    // IPv6 literals contain ':'; IPv4 literals are digits and dots only. Target names need a letter or '-'/'_'
    // somewhere to be told apart from an IPv4 address, which valid target names allow ("10.0.0.1" is refused).
    if (a.find(':') != std::string_view::npos) return true;
    return std::all_of(a.begin(), a.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

namespace {

// Named forward: -R NAME:PORT:host:port. The requested port is echoed back in channel opens only.
ForwardDecision decide_named(const std::string& name, const KeyGrant& key, const PolicyConfig& config,
                             const TargetLookup& lookup_target) {
    if (!monitoring_proxy::valid_target_name(name)) {
        return refuse("invalid_name", "\"" + name.substr(0, 80) + "\" is neither an address nor a valid target name (" +
                                          monitoring_proxy::kTargetNameRule + ")");
    }
    if (auto record = lookup_target(name)) return decide_declared(name, *record, key, config.range);
    if (!config.allow_undeclared) {
        return refuse("undeclared", "target \"" + name + "\" is not declared (tunnelctl add " + name + ")");
    }
    if (!key.from_authorized_keys) {
        return refuse("not_bound",
                      "only authorized_keys keys may declare new names; this key may serve only its "
                      "bound targets, not \"" +
                          name + "\"");
    }
    ForwardDecision d;
    d.allowed = true;
    d.target = name;
    d.self_register = true;
    return d;
}

// Numbered forward: -R PORT:host:port names the target by its fixed port; -R 0:host:port by the key being bound
// to exactly one.
ForwardDecision decide_numbered(std::uint32_t port, const KeyGrant& key, const PortRange& range,
                                const TargetLookup& lookup_target, const FixedPortLookup& lookup_fixed_port) {
    if (port == 0) {
        if (key.bound_targets.size() != 1) {
            return refuse("ambiguous_port0", "-R 0:... needs a key bound to exactly one target (this key has " +
                                                 std::to_string(key.bound_targets.size()) +
                                                 "); use -R NAME:80:host:port");
        }
        const std::string& name = key.bound_targets.front();
        auto record = lookup_target(name);
        if (!record) return refuse("undeclared", "target \"" + name + "\" vanished from the registry");
        return decide_declared(name, *record, key, range);
    }
    if (!range.contains(port)) {
        return refuse("port_range", "port " + std::to_string(port) + " is outside --port-range " +
                                        std::to_string(range.lo) + "-" + std::to_string(range.hi));
    }
    auto name = lookup_fixed_port(static_cast<std::uint16_t>(port));
    if (!name) {
        return refuse("undeclared", "no declared target has fixed port " + std::to_string(port) +
                                        " (tunnelctl add NAME --port " + std::to_string(port) + ")");
    }
    auto record = lookup_target(*name);
    if (!record) return refuse("undeclared", "target \"" + *name + "\" vanished from the registry");
    return decide_declared(*name, *record, key, range);
}

}  // namespace

ForwardDecision decide_forward(const ForwardRequest& request, const KeyGrant& key, const PolicyConfig& config,
                               const TargetLookup& lookup_target, const FixedPortLookup& lookup_fixed_port) {
    if (request.bind_port > 65535) return refuse("invalid", "port " + std::to_string(request.bind_port) + " > 65535");
    if (!key.forwarding_allowed) {
        return refuse("no_port_forwarding",
                      "authorized_keys forbids port forwarding for this key (restrict / "
                      "no-port-forwarding without permitlisten)");
    }
    if (!key.permitlisten.empty()) {
        bool ok = std::any_of(key.permitlisten.begin(), key.permitlisten.end(), [&](const std::string& e) {
            return permitlisten_allows(e, request.bind_address, request.bind_port);
        });
        if (!ok) {
            return refuse("permitlisten", "permitlisten does not allow " + request.bind_address + ":" +
                                              std::to_string(request.bind_port));
        }
    }
    if (!is_address_like(request.bind_address)) return decide_named(request.bind_address, key, config, lookup_target);
    return decide_numbered(request.bind_port, key, config.range, lookup_target, lookup_fixed_port);
}

}  // namespace tunneld
