#include "monitoring_proxy/etcd_client.hpp"

namespace monitoring_proxy::etcd {

std::vector<Endpoint> parse_endpoints(std::string_view text) {
    std::vector<Endpoint> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        auto comma = text.find(',', start);
        std::string_view item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        start = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
        if (item.empty()) continue;
        Endpoint e;
        e.url = std::string(item);
        std::string_view rest;
        if (item.rfind("http://", 0) == 0) {
            rest = item.substr(7);
        } else if (item.rfind("https://", 0) == 0) {
            rest = item.substr(8);
            e.tls = true;
        } else {
            throw ConfigError("etcd endpoint \"" + e.url + "\": expected http://HOST:PORT or https://HOST:PORT");
        }
        if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
        auto colon = rest.rfind(':');
        if (rest.empty() || rest.find('/') != std::string_view::npos || colon == std::string_view::npos ||
            colon == 0 || colon + 1 == rest.size() ||
            rest.substr(colon + 1).find_first_not_of("0123456789") != std::string_view::npos)
            throw ConfigError("etcd endpoint \"" + e.url + "\": expected http://HOST:PORT or https://HOST:PORT");
        e.authority = std::string(rest);
        out.push_back(std::move(e));
    }
    if (out.empty()) throw ConfigError("no etcd endpoint given (--etcd URL[,URL...])");
    return out;
}

std::string prefix_end(std::string_view prefix) {
    std::string end(prefix);
    while (!end.empty()) {
        auto& last = reinterpret_cast<unsigned char&>(end.back());
        if (last < 0xff) {
            ++last;
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');  // every key (etcd's convention)
}

}  // namespace monitoring_proxy::etcd
