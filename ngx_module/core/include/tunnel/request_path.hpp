// How a request path names its target: /<name>/<rest>. Pure string logic, no nginx, unit-tested.
#pragma once

#include <string_view>

namespace monitoring_proxy::tunnel {

struct TargetPath {
    std::string_view name;  // first path segment, may be empty or invalid: validation is the caller's
    std::string_view rest;  // the remainder starting with '/', "/" when the path ends after the name
};

// "/web1/metrics" -> {"web1", "/metrics"}; "/web1" and "/web1/" -> {"web1", "/"}; "/" -> {"", "/"}.
// `path` is nginx's normalised, decoded r->uri (no query string).
TargetPath split_target_path(std::string_view path) noexcept;

}  // namespace monitoring_proxy::tunnel
