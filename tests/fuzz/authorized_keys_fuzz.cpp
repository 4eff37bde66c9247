// The authorized-keys file is operator input, but a parser bug there decides who may log in: no crash, no
// over-read, and every line is either a key or an error, never both.
#include "policy/authorized_keys.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto parsed = tunneld::parse_authorized_keys(text, "fuzz");
    for (const auto& key : parsed.keys) {
        if (key.type.empty() || key.blob_base64.empty()) std::abort();
        for (const auto& e : parsed.errors)
            if (e.starts_with("fuzz:" + std::to_string(key.line) + ":")) std::abort();
        for (const auto& p : key.permitlisten) (void)tunneld::permitlisten_allows(p, "localhost", 20001);
    }
    return 0;
}
