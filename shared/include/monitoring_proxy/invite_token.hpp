// Join tokens (`tunnelctl invite`): "NAME.SECRET", where NAME is the target the token enrols and SECRET is 32
// random bytes in unpadded base64url (43 characters, 256 bits). The name in the token tells tunneld which
// invitation to check; only SHA-256(SECRET) is stored (InviteRecord::secret_sha256).
#pragma once

#include "monitoring_proxy/names.hpp"
#include "monitoring_proxy/registry_schema.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace monitoring_proxy::registry {

inline constexpr std::size_t kInviteSecretLength = 43;
inline constexpr std::size_t kInviteTokenMaxLength = kMaxTargetNameLength + 1 + kInviteSecretLength;

struct InviteToken {
    std::string name;
    std::string secret;
    std::string text() const { return name + "." + secret; }
};

// A fresh token for target `name` (from getrandom).
InviteToken new_invite_token(std::string_view name);
// The token in `text` (trailing whitespace, e.g. a file's newline, ignored); nullopt unless it is exactly
// NAME.SECRET with a valid target name and a secret of the right length and alphabet.
std::optional<InviteToken> parse_invite_token(std::string_view text);
// SHA-256 of the secret, as stored.
std::string invite_secret_hash(std::string_view secret);
// Whether `secret` hashes to what `record` stores (compared in constant time).
bool invite_secret_matches(const InviteRecord& record, std::string_view secret);

}  // namespace monitoring_proxy::registry
