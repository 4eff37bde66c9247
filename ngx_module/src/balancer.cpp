// The `tunnel` balancer: every request is resolved against the registry (one lookup, route.cpp) and connected to
// the live tunnel's loopback address, or in cluster mode to the nginx of the proxy holding the tunnel. Modelled on ngx_http_upstream_hash_module: init_upstream chains round-robin (for the
// placeholder server the upstream block needs), init_peer decides per request, get_peer fills pc->sockaddr.
//
// Outcomes other than "proxied" are decided in init_peer, before any connection: init_peer then fails, nginx
// takes its 500 path, and reply_filter.cpp replaces that 500 by our status and text.
#include "module.hpp"
#include "worker_registry.hpp"

#include "tunnel/cluster_hop.hpp"
#include "tunnel/scrape_timeout.hpp"

#include <cstring>
#include <exception>
#include <string>

namespace monitoring_proxy::tunnel::ngx {

namespace {

ngx_int_t init_peer(ngx_http_request_t* r, ngx_http_upstream_srv_conf_t* us) noexcept;

UpstreamConf* upstream_conf(ngx_http_upstream_srv_conf_t* us) noexcept {
    return static_cast<UpstreamConf*>(us->srv_conf[ngx_http_tunnel_module.ctx_index]);
}

ngx_int_t init_upstream(ngx_conf_t* cf, ngx_http_upstream_srv_conf_t* us) noexcept {
    if (us->servers != nullptr && us->servers->nelts > 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" in %s:%ui uses \"tunnel\": its peers come from the registry, "
                      "remove its \"server\" lines",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }
    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }
    us->peer.init = init_peer;
    upstream_conf(us)->initialized = 1;
    return NGX_OK;
}

ngx_int_t get_peer(ngx_peer_connection_t* pc, void* data) noexcept {
    auto* ctx = static_cast<RequestCtx*>(data);
    pc->sockaddr = reinterpret_cast<struct sockaddr*>(&ctx->peer_sockaddr);
    pc->socklen = sizeof(ctx->peer_sockaddr);
    pc->name = &ctx->peer_name;
    pc->cached = 0;
    pc->connection = nullptr;
    return NGX_OK;
}

void free_peer(ngx_peer_connection_t* pc, void*, ngx_uint_t) noexcept {
    // There is exactly one peer per request: never retry another one.
    pc->tries = 0;
}

// A scrape timeout below the configured read timeout gets this request its own copy of the upstream conf.
ngx_int_t apply_scrape_timeout(ngx_http_request_t* r) noexcept {
    const ngx_table_elt_t* header = find_request_header(r, kScrapeTimeoutHeader);
    if (header == nullptr) return NGX_OK;
    ngx_http_upstream_t* u = r->upstream;
    const auto scrape_ms = parse_scrape_timeout_ms(view(header->value));
    if (!scrape_ms) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "ignoring invalid %*s: \"%V\"",
                      kScrapeTimeoutHeader.size(), kScrapeTimeoutHeader.data(), &header->value);
        return NGX_OK;
    }
    const std::uint64_t timeout = effective_read_timeout_ms(scrape_ms, u->conf->read_timeout);
    if (timeout >= u->conf->read_timeout) return NGX_OK;
    auto* conf = static_cast<ngx_http_upstream_conf_t*>(ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t)));
    if (conf == nullptr) return NGX_ERROR;
    std::memcpy(conf, u->conf, sizeof(*conf));
    conf->read_timeout = static_cast<ngx_msec_t>(timeout);
    u->conf = conf;
    return NGX_OK;
}

ngx_int_t set_reply(ngx_http_request_t* r, RequestCtx* ctx) {
    const std::string body = reply_body(ctx->outcome, view(ctx->name));
    ctx->reply.data = static_cast<u_char*>(ngx_pnalloc(r->pool, body.size()));
    if (ctx->reply.data == nullptr) return NGX_ERROR;
    std::memcpy(ctx->reply.data, body.data(), body.size());
    ctx->reply.len = body.size();
    // nginx's 500 path turns keepalive off; the filter restores it for requests without a body to discard.
    ctx->keepalive = r->keepalive;
    // The texts are the contract with Prometheus and operators: an `error_page 500 ...` (common in server
    // blocks) must not swap them for a page about an error that did not happen. nginx skips error_page for a
    // request already marked as serving one.
    r->error_page = 1;
    const std::string name = printable_name(view(ctx->name));
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "tunnel: %*s for \"%*s\"",
                  outcome_label(ctx->outcome).size(), outcome_label(ctx->outcome).data(), name.size(),
                  name.data());
    return NGX_OK;
}

RequestCtx* route(ngx_http_request_t* r, UpstreamConf* ucf) noexcept {
    // tunnel_key names the target (the whole path is then the target's): decided here, never by a variable,
    // and never a hop (a hop forwards /NAME/...).
    if (ucf->key == nullptr) return route_by_path(r);
    ngx_str_t key;
    if (ngx_http_complex_value(r, ucf->key, &key) != NGX_OK) return nullptr;
    return decide_route(r, view(key), view(r->uri), false);
}

ngx_int_t init_peer_or_throw(ngx_http_request_t* r, ngx_http_upstream_srv_conf_t* us) {
    RequestCtx* ctx = route(r, upstream_conf(us));
    if (ctx == nullptr) return NGX_ERROR;
    ctx->balanced = 1;
    // proxy_set_header ran before us: without $tunnel_hop in it, the peer would not know this was a hop.
    if (ctx->outcome == Outcome::kHopped && !ctx->hop_header_read) {
        ctx->outcome = Outcome::kHopRefused;
        ctx->hop_verdict = static_cast<ngx_uint_t>(HopVerdict::kNoHopHeader);
    }
    if (ctx->outcome != Outcome::kProxied && ctx->outcome != Outcome::kHopped) {
        log_route_refusal(r, ctx);
        set_reply(r, ctx);
        return NGX_ERROR;  // nginx answers 500 without connecting; reply_filter.cpp substitutes ours
    }
    ngx_http_upstream_t* u = r->upstream;
    u->peer.data = ctx;
    u->peer.get = get_peer;
    u->peer.free = free_peer;
    u->peer.tries = 1;
    return apply_scrape_timeout(r);
}

ngx_int_t init_peer(ngx_http_request_t* r, ngx_http_upstream_srv_conf_t* us) noexcept {
    try {
        return init_peer_or_throw(r, us);
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "tunnel: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "tunnel: unexpected exception");
    }
    return NGX_ERROR;
}

}  // namespace

char* tunnel_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) noexcept {
    auto* ucf = static_cast<UpstreamConf*>(conf);
    auto* uscf = srv_conf<ngx_http_upstream_srv_conf_t>(cf, ngx_http_upstream_module);
    if (ucf->enabled) return const_cast<char*>("is duplicate");
    if (uscf->peer.init_upstream != nullptr) {
        // keepalive (and every other balancer) wraps whatever balancer is set when it is parsed: written
        // before `tunnel`, it would be replaced and silently disabled.
        return const_cast<char*>(
            "must be the first directive of its kind in the upstream block: \"keepalive\" before \"tunnel\" "
            "would be silently disabled, and \"tunnel\" cannot be combined with another balancing method");
    }
    uscf->peer.init_upstream = init_upstream;
    uscf->flags = NGX_HTTP_UPSTREAM_CREATE;
    ucf->enabled = 1;
    main_conf<MainConf>(cf, ngx_http_tunnel_module)->registry_needed = 1;

    // nginx refuses an upstream block without servers; the peers come from the registry, so add one
    // placeholder that is never connected to.
    auto* server = static_cast<ngx_http_upstream_server_t*>(ngx_array_push(uscf->servers));
    auto* addr = static_cast<ngx_addr_t*>(ngx_pcalloc(cf->pool, sizeof(ngx_addr_t)));
    auto* sin = static_cast<struct sockaddr_in*>(ngx_pcalloc(cf->pool, sizeof(struct sockaddr_in)));
    if (server == nullptr || addr == nullptr || sin == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    ngx_memzero(server, sizeof(*server));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin->sin_port = htons(9);  // discard; never used
    addr->sockaddr = reinterpret_cast<struct sockaddr*>(sin);
    addr->socklen = sizeof(*sin);
    ngx_str_set(&addr->name, "tunnel-placeholder");
    server->name = addr->name;
    server->addrs = addr;
    server->naddrs = 1;
    server->weight = 1;
    return NGX_CONF_OK;
}

ngx_int_t check_tunnel_upstreams(ngx_conf_t* cf) noexcept {
    auto* umcf = main_conf<ngx_http_upstream_main_conf_t>(cf, ngx_http_upstream_module);
    auto** upstreams = static_cast<ngx_http_upstream_srv_conf_t**>(umcf->upstreams.elts);
    for (ngx_uint_t i = 0; i < umcf->upstreams.nelts; ++i) {
        ngx_http_upstream_srv_conf_t* us = upstreams[i];
        if (us->srv_conf == nullptr) continue;  // implicit upstreams (proxy_pass http://host:port)
        UpstreamConf* ucf = upstream_conf(us);
        if (ucf->key != nullptr && !ucf->enabled) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"tunnel_key\" in upstream \"%V\" in %s:%ui needs \"tunnel\" in the same block",
                          &us->host, us->file_name, us->line);
            return NGX_ERROR;
        }
        if (ucf->enabled && !ucf->initialized) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "upstream \"%V\" in %s:%ui: a balancing directive after \"tunnel\" replaced it",
                          &us->host, us->file_name, us->line);
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}

}  // namespace monitoring_proxy::tunnel::ngx
