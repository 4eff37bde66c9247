// Parser for OpenSSH authorized_keys files, restricted to what tunneld honours. Pure C++ (no libssh), so it can
// be unit-tested and fuzzed through parse_authorized_keys().
//
// Understood options: from="PATTERNS", permitlisten="[HOST:]PORT" (repeatable), restrict, no-port-forwarding,
// port-forwarding, and the no-op-here no-pty/pty, no-agent-forwarding/agent-forwarding,
// no-X11-forwarding/X11-forwarding, no-user-rc/user-rc. Any other option, an unsupported key type or a malformed
// line is reported as "FILE:LINE: why" and the line is skipped (never half-applied).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tunneld {

struct AuthorizedKey {
    std::size_t line = 0;
    std::string type;         // "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ...
    std::string blob_base64;  // compared with the client's key blob
    std::string comment;
    std::vector<std::string> from;          // host pattern entries; empty: any address
    std::vector<std::string> permitlisten;  // "[host:]port" entries; empty: no restriction
    bool forwarding_allowed = true;         // false after restrict / no-port-forwarding, unless re-enabled
};

struct AuthorizedKeys {
    std::vector<AuthorizedKey> keys;
    std::vector<std::string> errors;  // "FILE:LINE: message", one per skipped line
};

AuthorizedKeys parse_authorized_keys(std::string_view text, std::string_view file_name);

// Does a permitlisten entry allow a tcpip-forward request for (bind_address, bind_port)?
bool permitlisten_allows(std::string_view entry, std::string_view bind_address, std::uint32_t bind_port);

// Key types tunneld accepts for authentication.
bool supported_key_type(std::string_view type) noexcept;

}  // namespace tunneld
