#include "tunnel/cluster_hop.hpp"

#include "monitoring_proxy/names.hpp"
#include "tunnel/outcome.hpp"

namespace monitoring_proxy::tunnel {

HopVerdict decide_hop(const HopRequest& request) noexcept {
    if (request.incoming_hop) return HopVerdict::kAlreadyHopped;
    if (request.self_id.empty()) return HopVerdict::kNoSelfId;
    if (request.holder_id == request.self_id) return HopVerdict::kHolderIsSelf;
    if (!request.sends_hop_header) return HopVerdict::kNoHopHeader;
    return HopVerdict::kHop;
}

std::optional<std::string_view> parse_hop_header(std::string_view value) noexcept {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (!valid_node_id(value)) return std::nullopt;
    return value;
}

std::string hop_refusal_message(HopVerdict verdict, std::string_view target, const HopRequest& request) {
    std::string out = "tunnel: not forwarding \"" + printable_name(target) + "\" to node \"" +
                      printable_name(request.holder_id) + "\", which the cluster view says holds it: ";
    switch (verdict) {
    case HopVerdict::kAlreadyHopped: {
        const auto from = request.incoming_hop ? parse_hop_header(*request.incoming_hop) : std::nullopt;
        out += "the request was already forwarded once (";
        out += std::string(kHopHeader) + ": " + (from ? "\"" + std::string(*from) + "\"" : "malformed value");
        out += ") and this node holds no tunnel for it";
        break;
    }
    case HopVerdict::kHolderIsSelf: out += "that is this node, and it holds no tunnel for it (a stale record)"; break;
    case HopVerdict::kNoSelfId: out += "this node's registry has no cluster state record (its node id)"; break;
    case HopVerdict::kNoHopHeader:
        out += "the location does not set \"proxy_set_header " + std::string(kHopHeader) +
               " $tunnel_hop;\" (without it the next proxy could forward the request back)";
        break;
    case HopVerdict::kHop: out += "no reason"; break;
    }
    return out;
}

}  // namespace monitoring_proxy::tunnel
