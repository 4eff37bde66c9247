// `location = /-/counters { tunnel_counters; }`: the shared counters as JSON (counters_json.hpp), for operators
// debugging and for tests. The metrics and status pages read the same snapshot.
#include "module.hpp"
#include "tunnel_api.hpp"

#include "tunnel/counters_json.hpp"

#include <cstring>
#include <exception>
#include <string>

namespace monitoring_proxy::tunnel::ngx {

ngx_int_t send_response(ngx_http_request_t* r, ngx_uint_t status, std::string_view content_type,
                        std::string_view body) noexcept {
    if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    auto* data = static_cast<u_char*>(ngx_pnalloc(r->pool, body.size() + content_type.size()));
    if (data == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    std::memcpy(data, body.data(), body.size());
    std::memcpy(data + body.size(), content_type.data(), content_type.size());
    ngx_http_complex_value_t cv;
    ngx_memzero(&cv, sizeof(cv));
    cv.value.data = data;
    cv.value.len = body.size();
    ngx_str_t type{content_type.size(), data + body.size()};
    return ngx_http_send_response(r, status, &type, &cv);
}

namespace {

ngx_int_t counters_handler(ngx_http_request_t* r) noexcept {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) return NGX_HTTP_NOT_ALLOWED;
    try {
        auto table = request_counters(r);
        if (!table) return NGX_HTTP_NOT_FOUND;
        return send_response(r, NGX_HTTP_OK, "application/json", counters_json(table->snapshot()));
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "tunnel_counters: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "tunnel_counters: unexpected exception");
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

}  // namespace

char* counters_directive(ngx_conf_t* cf, ngx_command_t*, void*) noexcept {
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(
        reinterpret_cast<ngx_http_conf_ctx_t*>(cf->ctx)->loc_conf[ngx_http_core_module.ctx_index]);
    clcf->handler = counters_handler;
    return NGX_CONF_OK;
}

}  // namespace monitoring_proxy::tunnel::ngx
