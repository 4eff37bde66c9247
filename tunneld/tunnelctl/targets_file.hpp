// The original image's /etc/monitoring/targets format: one "HOST:PORT NAME" per line ("localhost:20001 web1"),
// '#' comments and blank lines allowed. Pure parsing, no registry: unit-tested and fuzzable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace monitoring_proxy::tunnelctl {

struct TargetsFileEntry {
    std::size_t line = 0;
    std::string name;
    std::uint16_t port = 0;
};

struct TargetsFile {
    std::vector<TargetsFileEntry> entries;
    std::vector<std::string> errors;  // "FILE:LINE: what is wrong"
};

// Every bad line is reported, not only the first, so one edit fixes the file.
TargetsFile parse_targets_file(std::string_view text, std::string_view file_name);

}  // namespace monitoring_proxy::tunnelctl
