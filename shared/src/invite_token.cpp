#include "monitoring_proxy/invite_token.hpp"

#include "monitoring_proxy/names.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/random.h>

#include <stdexcept>

namespace monitoring_proxy::registry {
namespace {

constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

bool base64url_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::string base64url(const unsigned char* data, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; i += 3) {
        std::uint32_t chunk = std::uint32_t{data[i]} << 16;
        if (i + 1 < n) chunk |= std::uint32_t{data[i + 1]} << 8;
        if (i + 2 < n) chunk |= data[i + 2];
        const std::size_t chars = n - i >= 3 ? 4 : n - i + 1;
        for (std::size_t k = 0; k < chars; ++k) out += kBase64Url[(chunk >> (18 - 6 * k)) & 63];
    }
    return out;
}

}  // namespace

InviteToken new_invite_token(std::string_view name) {
    unsigned char bytes[32];
    std::size_t got = 0;
    while (got < sizeof bytes) {
        ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
        if (n < 0) throw std::runtime_error("getrandom failed: cannot make a join token");
        got += static_cast<std::size_t>(n);
    }
    return InviteToken{std::string(name), base64url(bytes, sizeof bytes)};
}

std::optional<InviteToken> parse_invite_token(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t'))
        text.remove_suffix(1);
    if (text.size() > kInviteTokenMaxLength) return std::nullopt;
    const auto dot = text.rfind('.');
    if (dot == std::string_view::npos) return std::nullopt;
    std::string_view name = text.substr(0, dot), secret = text.substr(dot + 1);
    if (!valid_target_name(name) || secret.size() != kInviteSecretLength) return std::nullopt;
    for (char c : secret)
        if (!base64url_char(c)) return std::nullopt;
    return InviteToken{std::string(name), std::string(secret)};
}

std::string invite_secret_hash(std::string_view secret) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(secret.data(), secret.size(), digest, &length, EVP_sha256(), nullptr) != 1 || length != 32)
        throw std::runtime_error("SHA-256 failed (libcrypto)");
    return std::string(reinterpret_cast<const char*>(digest), length);
}

bool invite_secret_matches(const InviteRecord& record, std::string_view secret) {
    const std::string hash = invite_secret_hash(secret);
    return record.secret_sha256.size() == hash.size() &&
           CRYPTO_memcmp(record.secret_sha256.data(), hash.data(), hash.size()) == 0;
}

}  // namespace monitoring_proxy::registry
