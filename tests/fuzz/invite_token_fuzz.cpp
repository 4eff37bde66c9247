// The join token is what an unauthenticated client sends over keyboard-interactive: the parser must refuse
// anything but NAME.SECRET without crashing, and what it accepts must print back as the same token.
#include "monitoring_proxy/invite_token.hpp"
#include "monitoring_proxy/names.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace monitoring_proxy::registry;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto token = parse_invite_token(text);
    if (!token) return 0;
    if (!monitoring_proxy::valid_target_name(token->name) || token->secret.size() != kInviteSecretLength) std::abort();
    if (!text.starts_with(token->text())) std::abort();
    if (text.substr(token->text().size()).find_first_not_of(" \t\r\n") != std::string_view::npos) std::abort();
    if (parse_invite_token(token->text())->text() != token->text()) std::abort();
    return 0;
}
