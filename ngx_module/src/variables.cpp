// $tunnel_name and $tunnel_uri: the first path segment and the rest, for
// `proxy_pass http://tunnels$tunnel_uri$is_args$args;` and for logs; $tunnel_hop: this node's id when the request
// is forwarded one hop to the proxy holding its tunnel, for `proxy_set_header Monitoring-Proxy-Hop $tunnel_hop;`
// (empty otherwise, and nginx sends no header with an empty value). $tunnel_uri and $tunnel_hop decide the
// route (route.cpp): nginx evaluates them before the balancer runs.
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
// must be that same path, escaped again the way proxy_pass escapes a location's URI: the rest after the name
// for a local tunnel, the whole original path (/NAME/rest) for a hop, so the next proxy routes it by name.
ngx_int_t tunnel_uri_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) noexcept {
    const RequestCtx* ctx = route_by_path(r);
    if (ctx == nullptr) return NGX_ERROR;
    const std::string_view path =
        ctx->outcome == Outcome::kHopped ? view(r->uri) : split_target_path(view(r->uri)).rest;
    u_char* src = mutable_data(path);
    const uintptr_t escapes = ngx_escape_uri(nullptr, src, path.size(), NGX_ESCAPE_URI);
    if (escapes == 0) {
        set_value(v, src, path.size());
        return NGX_OK;
    }
    const size_t len = path.size() + 2 * escapes;
    auto* dst = static_cast<u_char*>(ngx_pnalloc(r->pool, len));
    if (dst == nullptr) return NGX_ERROR;
    ngx_escape_uri(dst, src, path.size(), NGX_ESCAPE_URI);
    set_value(v, dst, len);
    return NGX_OK;
}

ngx_int_t tunnel_hop_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) noexcept {
    RequestCtx* ctx = route_by_path(r);
    if (ctx == nullptr) return NGX_ERROR;
    if (ctx->outcome != Outcome::kHopped) {
        static u_char empty[] = "";
        set_value(v, empty, 0);
        return NGX_OK;
    }
    ctx->hop_header_read = 1;  // the balancer hops only when the next proxy will see the header
    set_value(v, ctx->self_id.data, ctx->self_id.len);
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
        {ngx_string("tunnel_hop"), tunnel_hop_variable},
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
