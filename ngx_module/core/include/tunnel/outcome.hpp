// What became of one request to /<name>/...: the outcome decides the status the proxy answers with (or leaves
// the status to the exporter), the text the client reads, and which counter goes up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace monitoring_proxy::tunnel {

enum class Outcome : std::uint8_t {
    kProxied = 0,        // forwarded to the live tunnel; the exporter's status is the answer
    kUnknown,            // 404: no such target declared
    kNotConnected,       // 503: declared, no live tunnel (nothing is connected to)
    kInvalidName,        // 400: the first path segment is not a valid target name
    kPathForbidden,      // 403: outside the target's allowed path prefixes
    kRegistryError,      // 500: the registry cannot be read
    kUpstreamFailed,     // 502: the tunnel refused or broke the connection, or the exporter answered garbage
    kUpstreamTimeout,    // 504: the exporter was too slow
    kHopped,             // cluster: forwarded one hop to the proxy holding the tunnel; its answer is ours
    kHopRefused,         // 503: another proxy holds the tunnel, but this request may not hop (see the error log)
};
inline constexpr std::size_t kOutcomeCount = 10;

// The status the proxy itself answers with; 0 for kProxied (the exporter decides).
unsigned status_for(Outcome outcome) noexcept;

// Stable snake_case name, used as a metric label value ("not_connected").
std::string_view outcome_label(Outcome outcome) noexcept;

// A proxied (or hopped) request whose answer came from nginx rather than the exporter: 502 -> kUpstreamFailed,
// 504 -> kUpstreamTimeout; everything else keeps `decided`.
Outcome final_outcome(Outcome decided, unsigned status) noexcept;

// The name as it may be echoed into a response body or a log line: at most 64 bytes, bytes outside printable
// ASCII and the double quote replaced by '?', "..." appended when cut.
std::string printable_name(std::string_view name);

// The plain-text body the proxy answers with for its own outcomes, one line ending in '\n', for example
// `unknown target "web1"`.
std::string reply_body(Outcome outcome, std::string_view name);

}  // namespace monitoring_proxy::tunnel
