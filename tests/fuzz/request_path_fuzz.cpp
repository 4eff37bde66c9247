// Request paths are the first thing an HTTP client controls: the split must stay inside the input, and whatever
// it calls a name must either be a valid target name or be refused before it reaches the registry.
#include "monitoring_proxy/names.hpp"
#include "tunnel/outcome.hpp"
#include "tunnel/request_path.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace monitoring_proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view path(reinterpret_cast<const char*>(data), size);
    auto split = tunnel::split_target_path(path);
    auto inside = [&](std::string_view part) {
        return part.empty() || (part.data() >= path.data() && part.data() + part.size() <= path.data() + path.size());
    };
    if (!inside(split.name)) std::abort();
    if (split.rest != "/" && !inside(split.rest)) std::abort();
    if (split.rest.empty() || split.rest.front() != '/') std::abort();
    if (valid_target_name(split.name)) {
        for (char c : split.name)
            if (c == '/' || c == '%' || c == '.' && split.name == "..") std::abort();
    }
    // Whatever the name, the text echoed back to the client stays printable and short.
    for (char c : tunnel::printable_name(split.name))
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e || c == '"') std::abort();
    (void)check_target_name(split.name);
    return 0;
}
