#include "tunnel/request_path.hpp"

namespace monitoring_proxy::tunnel {

TargetPath split_target_path(std::string_view path) noexcept {
    static constexpr std::string_view kRoot = "/";
    if (!path.empty() && path.front() == '/') {
        path.remove_prefix(1);
    }
    const auto slash = path.find('/');
    if (slash == std::string_view::npos) {
        return {path, kRoot};
    }
    return {path.substr(0, slash), path.substr(slash)};
}

}  // namespace monitoring_proxy::tunnel
