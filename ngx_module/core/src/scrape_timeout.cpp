#include "tunnel/scrape_timeout.hpp"

#include <algorithm>

namespace monitoring_proxy::tunnel {

namespace {

bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
    return s;
}

}  // namespace

std::optional<std::uint64_t> parse_scrape_timeout_ms(std::string_view value) noexcept {
    value = trim(value);
    const auto dot = value.find('.');
    const std::string_view whole = value.substr(0, dot);
    const std::string_view fraction = dot == std::string_view::npos ? std::string_view{} : value.substr(dot + 1);
    if (whole.empty() && fraction.empty()) return std::nullopt;
    if (dot != std::string_view::npos && fraction.empty()) return std::nullopt;  // "10." is not a number here

    std::uint64_t seconds = 0;
    for (char c : whole) {
        if (!is_digit(c)) return std::nullopt;
        seconds = seconds * 10 + static_cast<std::uint64_t>(c - '0');
        if (seconds > kScrapeTimeoutMaxMs / 1000) return std::nullopt;  // also stops overflow
    }
    std::uint64_t millis = 0, scale = 100;
    for (char c : fraction) {
        if (!is_digit(c)) return std::nullopt;
        millis += static_cast<std::uint64_t>(c - '0') * scale;  // digits past milliseconds are dropped
        scale /= 10;
    }
    const std::uint64_t total = seconds * 1000 + millis;
    if (total == 0 || total > kScrapeTimeoutMaxMs) return std::nullopt;
    return total;
}

std::uint64_t effective_read_timeout_ms(std::optional<std::uint64_t> scrape_timeout_ms,
                                        std::uint64_t configured_ms) noexcept {
    if (!scrape_timeout_ms) return configured_ms;
    const std::uint64_t margin = std::min(kScrapeTimeoutMaxMarginMs, *scrape_timeout_ms / 4);
    const std::uint64_t wanted = std::max<std::uint64_t>(1, *scrape_timeout_ms - margin);
    return std::min(wanted, configured_ms);
}

}  // namespace monitoring_proxy::tunnel
