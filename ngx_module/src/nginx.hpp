// The one place nginx's C headers are included. Everything nginx-facing in this module includes this file.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <string_view>

namespace monitoring_proxy::tunnel::ngx {

inline std::string_view view(const ngx_str_t& s) noexcept {
    return {reinterpret_cast<const char*>(s.data), s.len};
}

// ngx_http_conf_get_module_* yield void*; C++ needs the cast spelled out.
template <typename Conf>
Conf* main_conf(ngx_conf_t* cf, const ngx_module_t& module) noexcept {
    return static_cast<Conf*>(
        reinterpret_cast<ngx_http_conf_ctx_t*>(cf->ctx)->main_conf[module.ctx_index]);
}
template <typename Conf>
Conf* main_conf(ngx_http_request_t* r, const ngx_module_t& module) noexcept {
    return static_cast<Conf*>(r->main_conf[module.ctx_index]);
}
template <typename Conf>
Conf* srv_conf(ngx_conf_t* cf, const ngx_module_t& module) noexcept {
    return static_cast<Conf*>(
        reinterpret_cast<ngx_http_conf_ctx_t*>(cf->ctx)->srv_conf[module.ctx_index]);
}

}  // namespace monitoring_proxy::tunnel::ngx
