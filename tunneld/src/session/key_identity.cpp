#include "session/key_identity.hpp"

namespace tunneld {

std::string sha256_fingerprint(ssh_key key) {
    unsigned char* hash = nullptr;
    size_t hash_len = 0;
    if (key == nullptr || ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_len) != 0) return {};
    char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_len);
    ssh_clean_pubkey_hash(&hash);
    if (text == nullptr) return {};
    std::string out(text);
    ssh_string_free_char(text);
    return out;
}

std::string key_blob_base64(ssh_key key) {
    char* b64 = nullptr;
    if (key == nullptr || ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK || b64 == nullptr) return {};
    std::string out(b64);
    ssh_string_free_char(b64);
    return out;
}

std::string key_type_name(ssh_key key) {
    const char* name = key ? ssh_key_type_to_char(ssh_key_type(key)) : nullptr;
    return name ? name : "unknown";
}

}  // namespace tunneld
