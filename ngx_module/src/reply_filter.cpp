// init_peer decides 400/403/404/500/503 before any connection and then fails, which makes nginx answer with
// its generic 500 page. These filters swap that page for our status and text: the header filter rewrites status,
// type and length, the body filter drops nginx's page and sends ours. Only requests whose RequestCtx carries a
// reply are touched; everything else passes through.
#include "module.hpp"

namespace monitoring_proxy::tunnel::ngx {

namespace {

ngx_http_output_header_filter_pt g_next_header_filter;
ngx_http_output_body_filter_pt g_next_body_filter;

ngx_int_t header_filter(ngx_http_request_t* r) noexcept {
    RequestCtx* ctx = request_ctx(r);
    if (ctx == nullptr || ctx->reply.len == 0 || r != r->main || ctx->replacing_reply ||
        r->headers_out.status != NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return g_next_header_filter(r);
    }
    const unsigned status = status_for(ctx->outcome);
    r->headers_out.status = status;
    r->err_status = status;  // what $status and the access log report
    r->headers_out.status_line.len = 0;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = nullptr;
    r->headers_out.content_length_n = static_cast<off_t>(ctx->reply.len);
    if (r->headers_out.content_length != nullptr) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = nullptr;
    }
    // nginx's 500 path closes the client connection; ours are ordinary answers. A request body would have to
    // be discarded first, so only body-less requests keep their connection.
    if (ctx->keepalive && r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        r->keepalive = 1;
    }
    ctx->replacing_reply = 1;
    return g_next_header_filter(r);
}

ngx_int_t body_filter(ngx_http_request_t* r, ngx_chain_t* in) noexcept {
    RequestCtx* ctx = request_ctx(r);
    if (ctx == nullptr || !ctx->replacing_reply || r != r->main) {
        return g_next_body_filter(r, in);
    }
    for (ngx_chain_t* cl = in; cl != nullptr; cl = cl->next) {  // nginx's page: consumed, never sent
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }
    if (ctx->reply_sent || r->header_only) return NGX_OK;
    ctx->reply_sent = 1;
    auto* b = static_cast<ngx_buf_t*>(ngx_calloc_buf(r->pool));
    if (b == nullptr) return NGX_ERROR;
    b->pos = ctx->reply.data;
    b->last = ctx->reply.data + ctx->reply.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;
    ngx_chain_t out{b, nullptr};
    return g_next_body_filter(r, &out);
}

}  // namespace

ngx_int_t install_reply_filter(ngx_conf_t*) noexcept {
    g_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = header_filter;
    g_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = body_filter;
    return NGX_OK;
}

}  // namespace monitoring_proxy::tunnel::ngx
