// Cluster mode's one-hop route: a target whose tunnel another proxy holds is proxied once to that proxy, marked
// with the Monitoring-Proxy-Hop header (this proxy's node id) so that the next proxy never forwards it again.
// Pure decision logic on string_view, no nginx: unit-tested.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace monitoring_proxy::tunnel {

inline constexpr std::string_view kHopHeader = "Monitoring-Proxy-Hop";

enum class HopVerdict {
    kHop,             // forward one hop to the holding node
    kAlreadyHopped,   // the request carries the hop header: a second hop could loop, answer 503
    kHolderIsSelf,    // the cluster view names this very node (a stale record): nowhere to go, answer 503
    kNoSelfId,        // no cluster state record: the hop header would be empty and the peer could forward again
    kNoHopHeader,     // the location does not send $tunnel_hop (a configuration from before cluster mode)
};

struct HopRequest {
    std::string_view self_id;                     // this node (the cluster state record); empty if none
    std::string_view holder_id;                   // the node the cluster view says holds the tunnel
    std::optional<std::string_view> incoming_hop;  // the request's Monitoring-Proxy-Hop value, if it has one
    bool sends_hop_header = true;                 // the location evaluates $tunnel_hop (proxy_set_header)
};

// Whether to hop. Any incoming hop header stops it, whatever its value: a peer never forwards twice.
HopVerdict decide_hop(const HopRequest& request) noexcept;

// The hop header's value as received: blanks around it trimmed; nullopt unless it is a valid node id (then
// it is only logged as malformed: its presence alone already stops a second hop).
std::optional<std::string_view> parse_hop_header(std::string_view value) noexcept;

// The error-log line for a refused hop, naming the target, the holder and the reason.
std::string hop_refusal_message(HopVerdict verdict, std::string_view target, const HopRequest& request);

}  // namespace monitoring_proxy::tunnel
