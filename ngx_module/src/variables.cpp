// $tunnel_name and $tunnel_uri: the first path segment and the rest, for
// `proxy_pass http://tunnels$tunnel_uri$is_args$args;` and for logs.
#include "module.hpp"

#include "tunnel/request_path.hpp"

namespace monitoring_proxy::tunnel::ngx {

namespace {

void set_value(ngx_http_variable_value_t* v, u_char* data, size_t len) noexcept {
    v->data = data;
    v->len = static_cast<unsigned>(len);
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
}

u_char* mutable_data(std::string_view s) noexcept {
    return reinterpret_cast<u_char*>(const_cast<char*>(s.data()));
}

ngx_int_t tunnel_name_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) noexcept {
    // After the balancer ran, the name it routed by (tunnel_key may differ from the path); before, the path's.
    if (const RequestCtx* ctx = request_ctx(r)) {
        set_value(v, ctx->name.data, ctx->name.len);
        return NGX_OK;
    }
    const TargetPath split = split_target_path(view(r->uri));
    set_value(v, mutable_data(split.name), split.name.size());
    return NGX_OK;
}

// r->uri is decoded and normalised (the name and the allowed prefixes are checked on it), so what is forwarded
// must be that same path, escaped again the way proxy_pass escapes a location's URI.
ngx_int_t tunnel_uri_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) noexcept {
    const TargetPath split = split_target_path(view(r->uri));
    u_char* src = mutable_data(split.rest);
    const uintptr_t escapes = ngx_escape_uri(nullptr, src, split.rest.size(), NGX_ESCAPE_URI);
    if (escapes == 0) {
        set_value(v, src, split.rest.size());
        return NGX_OK;
    }
    const size_t len = split.rest.size() + 2 * escapes;
    auto* dst = static_cast<u_char*>(ngx_pnalloc(r->pool, len));
    if (dst == nullptr) return NGX_ERROR;
    ngx_escape_uri(dst, src, split.rest.size(), NGX_ESCAPE_URI);
    set_value(v, dst, len);
    return NGX_OK;
}

struct VariableDef {
    ngx_str_t name;
    ngx_http_get_variable_pt get;
};

}  // namespace

ngx_int_t add_variables(ngx_conf_t* cf) noexcept {
    VariableDef defs[] = {
        {ngx_string("tunnel_name"), tunnel_name_variable},
        {ngx_string("tunnel_uri"), tunnel_uri_variable},
    };
    for (VariableDef& def : defs) {
        // r->uri changes with rewrites, so the values are never cached.
        ngx_http_variable_t* var = ngx_http_add_variable(cf, &def.name, NGX_HTTP_VAR_NOCACHEABLE);
        if (var == nullptr) return NGX_ERROR;
        var->get_handler = def.get;
        var->data = 0;
    }
    return NGX_OK;
}

}  // namespace monitoring_proxy::tunnel::ngx
