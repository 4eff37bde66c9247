// OpenSSH public keys: parse "type base64 [comment]" and compute the SHA256 fingerprint exactly as
// `ssh-keygen -lf` prints it ("SHA256:" + unpadded base64).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace monitoring_proxy {

struct PublicKey {
    std::string type;         // "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ...
    std::string base64;       // the key blob as written
    std::string comment;
    std::string fingerprint;  // "SHA256:..."
};

class KeyError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses one public key line (no authorized_keys options). Throws KeyError saying what is wrong.
PublicKey parse_public_key(std::string_view line);
// True for "SHA256:" followed by 43 base64 characters.
bool looks_like_fingerprint(std::string_view s) noexcept;

}  // namespace monitoring_proxy
