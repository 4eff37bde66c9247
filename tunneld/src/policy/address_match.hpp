// OpenSSH-style host pattern lists as used by authorized_keys `from="..."`: comma-separated entries, each a
// wildcard pattern (`*`, `?`) or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`), `!` negating an entry. Pure C++.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tunneld {

// Case-insensitive glob match of `text` against `pattern` (`*` any run, `?` one character).
bool wildcard_match(std::string_view pattern, std::string_view text) noexcept;

// Empty when `entry` (one list element, optionally starting with '!') is well formed, else why not.
std::string check_host_pattern(std::string_view entry);

// Splits "a,b,!c" into entries (no validation).
std::vector<std::string> split_pattern_list(std::string_view list);

// OpenSSH semantics: any matching negated entry refuses; otherwise any matching positive entry allows.
// `address` is a textual IPv4 or IPv6 address (the client has no trusted host name here).
bool address_matches_patterns(const std::vector<std::string>& entries, std::string_view address);

}  // namespace tunneld
