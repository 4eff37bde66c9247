// Prometheus tells every target how long it will wait (X-Prometheus-Scrape-Timeout-Seconds, a decimal number of
// seconds such as "10" or "2.5"). The proxy answers 504 a little earlier, so Prometheus records a clear 504 from
// the proxy instead of its own "context deadline exceeded".
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace monitoring_proxy::tunnel {

inline constexpr std::string_view kScrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds";
// The margin left for the 504 to travel back: a quarter of the scrape timeout, at most this much.
inline constexpr std::uint64_t kScrapeTimeoutMaxMarginMs = 500;
// Larger values are nonsense from a client and are ignored (the configured timeout applies).
inline constexpr std::uint64_t kScrapeTimeoutMaxMs = 24ull * 3600 * 1000;

// Milliseconds from the header value: digits with an optional fraction, surrounding blanks allowed. Anything
// else (empty, negative, exponent, garbage, zero, more than a day) is nullopt: the header is then ignored.
std::optional<std::uint64_t> parse_scrape_timeout_ms(std::string_view value) noexcept;

// The upstream read timeout for one request: the scrape timeout minus the margin (at least 1 ms), never more
// than the configured one. Without a usable header it is the configured one.
std::uint64_t effective_read_timeout_ms(std::optional<std::uint64_t> scrape_timeout_ms,
                                        std::uint64_t configured_ms) noexcept;

}  // namespace monitoring_proxy::tunnel
