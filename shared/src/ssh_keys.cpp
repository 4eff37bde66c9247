#include "monitoring_proxy/ssh_keys.hpp"

#include <libssh/libssh.h>

#include <memory>

namespace monitoring_proxy {
namespace {
struct KeyDeleter {
    void operator()(ssh_key k) const noexcept { ssh_key_free(k); }
};
using KeyPtr = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyDeleter>;

std::string_view next_field(std::string_view& rest) {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    auto end = rest.find_first_of(" \t");
    std::string_view field = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    return field;
}
}  // namespace

PublicKey parse_public_key(std::string_view line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    std::string_view rest = line;
    PublicKey key;
    key.type = next_field(rest);
    key.base64 = next_field(rest);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    key.comment = rest;
    if (key.type.empty()) throw KeyError("empty public key");
    if (key.base64.empty()) throw KeyError("public key has no key data after \"" + key.type + "\"");

    const ssh_keytypes_e type = ssh_key_type_from_name(key.type.c_str());
    if (type == SSH_KEYTYPE_UNKNOWN) throw KeyError("unknown public key type \"" + key.type + "\"");
    if (type == SSH_KEYTYPE_DSS) throw KeyError("DSA keys are not accepted (use ed25519, ecdsa or rsa)");
    ssh_key raw = nullptr;
    if (ssh_pki_import_pubkey_base64(key.base64.c_str(), type, &raw) != SSH_OK || !raw)
        throw KeyError("key data is not a valid " + key.type + " public key");
    KeyPtr parsed(raw);
    // The blob names its own type; a line claiming another one is malformed.
    if (ssh_key_type(parsed.get()) != type) throw KeyError("key data does not match the type \"" + key.type + "\"");

    unsigned char* hash = nullptr;
    size_t hash_len = 0;
    if (ssh_get_publickey_hash(parsed.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_len) != 0)
        throw KeyError("cannot hash public key");
    char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_len);
    ssh_clean_pubkey_hash(&hash);
    if (!fp) throw KeyError("cannot format key fingerprint");
    key.fingerprint = fp;
    ssh_string_free_char(fp);
    return key;
}

bool looks_like_fingerprint(std::string_view s) noexcept {
    constexpr std::string_view prefix = "SHA256:";
    if (!s.starts_with(prefix) || s.size() != prefix.size() + 43) return false;
    for (char c : s.substr(prefix.size()))
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return false;
    return true;
}

}  // namespace monitoring_proxy
