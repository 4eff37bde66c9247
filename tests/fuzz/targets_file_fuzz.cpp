// The original image's targets file is imported at every container start: a bad file must be reported line by
// line, and nothing it accepts may be an invalid name or port.
#include "monitoring_proxy/names.hpp"
#include "targets_file.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto parsed = monitoring_proxy::tunnelctl::parse_targets_file(text, "targets");
    for (const auto& e : parsed.entries)
        if (!monitoring_proxy::valid_target_name(e.name) || e.port == 0) std::abort();
    return 0;
}
