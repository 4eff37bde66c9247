#include "tunnel/outcome.hpp"

#include "monitoring_proxy/names.hpp"

namespace monitoring_proxy::tunnel {

unsigned status_for(Outcome outcome) noexcept {
    switch (outcome) {
    case Outcome::kProxied: return 0;
    case Outcome::kUnknown: return 404;
    case Outcome::kNotConnected: return 503;
    case Outcome::kInvalidName: return 400;
    case Outcome::kPathForbidden: return 403;
    case Outcome::kRegistryError: return 500;
    case Outcome::kUpstreamFailed: return 502;
    case Outcome::kUpstreamTimeout: return 504;
    case Outcome::kHopped: return 0;
    case Outcome::kHopRefused: return 503;
    }
    return 500;
}

std::string_view outcome_label(Outcome outcome) noexcept {
    switch (outcome) {
    case Outcome::kProxied: return "proxied";
    case Outcome::kUnknown: return "unknown_target";
    case Outcome::kNotConnected: return "not_connected";
    case Outcome::kInvalidName: return "invalid_name";
    case Outcome::kPathForbidden: return "path_forbidden";
    case Outcome::kRegistryError: return "registry_error";
    case Outcome::kUpstreamFailed: return "upstream_failed";
    case Outcome::kUpstreamTimeout: return "upstream_timeout";
    case Outcome::kHopped: return "hopped";
    case Outcome::kHopRefused: return "hop_refused";
    }
    return "unknown_outcome";
}

Outcome final_outcome(Outcome decided, unsigned status) noexcept {
    if (decided != Outcome::kProxied && decided != Outcome::kHopped) return decided;
    if (status == 502) return Outcome::kUpstreamFailed;
    if (status == 504) return Outcome::kUpstreamTimeout;
    return decided;
}

std::string printable_name(std::string_view name) {
    // One character more than a valid name may have, so a name that is too long shows as such.
    static constexpr std::size_t kMax = kMaxTargetNameLength + 1;
    std::string out;
    const std::size_t n = name.size() < kMax ? name.size() : kMax;
    out.reserve(n + 3);
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        out.push_back(c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? static_cast<char>(c) : '?');
    }
    if (name.size() > kMax) out += "...";
    return out;
}

std::string reply_body(Outcome outcome, std::string_view name) {
    const std::string quoted = "\"" + printable_name(name) + "\"";
    switch (outcome) {
    case Outcome::kUnknown: return "unknown target " + quoted + "\n";
    case Outcome::kNotConnected: return "target " + quoted + " is not connected\n";
    case Outcome::kInvalidName:
        return "invalid target name " + quoted + ": names must match " + kTargetNameRule + "\n";
    case Outcome::kPathForbidden: return "path not allowed for target " + quoted + "\n";
    case Outcome::kRegistryError: return "tunnel registry unavailable\n";
    case Outcome::kUpstreamFailed: return "target " + quoted + " refused the connection\n";
    case Outcome::kUpstreamTimeout: return "target " + quoted + " timed out\n";
    case Outcome::kHopRefused:
        return "target " + quoted + " is not connected to this proxy and was not forwarded to the one holding it\n";
    case Outcome::kProxied:
    case Outcome::kHopped: break;
    }
    return {};
}

}  // namespace monitoring_proxy::tunnel
