// The route of one request, decided once and kept in its RequestCtx: a local tunnel, one hop to the proxy that
// holds the tunnel (cluster mode), or our own answer. nginx evaluates proxy_pass's URI ($tunnel_uri) and the
// proxy_set_header values ($tunnel_hop) before the balancer's init_peer, so whichever of them runs first
// decides, and the URI, the hop header and the peer always agree.
#include "module.hpp"
#include "worker_registry.hpp"

#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/names.hpp"
#include "tunnel/cluster_hop.hpp"
#include "tunnel/request_path.hpp"

#include <cstring>
#include <exception>
#include <string>

namespace monitoring_proxy::tunnel::ngx {

namespace {

Outcome resolve(ngx_http_request_t* r, RequestCtx* ctx, std::string_view name, std::string_view path,
                registry::Resolved* resolved) noexcept {
    if (!valid_target_name(name)) return Outcome::kInvalidName;
    registry::Reader* reader = worker_reader(r->connection->log);
    if (reader == nullptr) return Outcome::kRegistryError;
    try {
        *resolved = reader->resolve(name, path);
        switch (resolved->status) {
        case registry::Resolution::kLive: ctx->declared = 1; return Outcome::kProxied;
        case registry::Resolution::kCluster: ctx->declared = 1; return Outcome::kHopped;
        case registry::Resolution::kUnknown: return Outcome::kUnknown;
        case registry::Resolution::kNotConnected: ctx->declared = 1; return Outcome::kNotConnected;
        case registry::Resolution::kPathForbidden: ctx->declared = 1; return Outcome::kPathForbidden;
        }
        return Outcome::kRegistryError;
    } catch (const registry::DecodeError& e) {
        // One record that cannot be decoded (damaged, or written by a newer version) fails this target only.
        const std::string printable = printable_name(name);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "tunnel: the registry record of \"%*s\" is unreadable: %s",
                      printable.size(), printable.data(), e.what());
    } catch (const std::exception& e) {
        worker_registry_failed(r->connection->log, e.what());
    } catch (...) {
        worker_registry_failed(r->connection->log, "unexpected exception");
    }
    return Outcome::kRegistryError;
}

bool copy_to_pool(ngx_http_request_t* r, std::string_view from, ngx_str_t* to) noexcept {
    to->len = from.size();
    to->data = static_cast<u_char*>(ngx_pnalloc(r->pool, from.size() + 1));
    if (to->data == nullptr) return false;
    std::memcpy(to->data, from.data(), from.size());
    return true;
}

void set_peer(RequestCtx* ctx, std::uint32_t address, std::uint16_t port) noexcept {
    // The forward's own address: keepalive's cache matches idle connections on the whole sockaddr, so a
    // connection relayed by an earlier forward (another address) is never handed to this request.
    ctx->peer_sockaddr.sin_family = AF_INET;
    ctx->peer_sockaddr.sin_port = htons(port);
    ctx->peer_sockaddr.sin_addr.s_addr = htonl(address);
    u_char* end = ngx_snprintf(ctx->peer_name_data, sizeof(ctx->peer_name_data), "%ui.%ui.%ui.%ui:%ui",
                               static_cast<ngx_uint_t>(address >> 24), static_cast<ngx_uint_t>((address >> 16) & 0xff),
                               static_cast<ngx_uint_t>((address >> 8) & 0xff), static_cast<ngx_uint_t>(address & 0xff),
                               static_cast<ngx_uint_t>(port));
    ctx->peer_name.data = ctx->peer_name_data;
    ctx->peer_name.len = static_cast<size_t>(end - ctx->peer_name_data);
}

// A cluster-held target: hop, or refuse now (the reason is logged by log_route_refusal).
bool decide_hop_route(ngx_http_request_t* r, RequestCtx* ctx, const registry::Resolved& resolved) noexcept {
    if (!copy_to_pool(r, resolved.holder.view(), &ctx->holder_id) || !copy_to_pool(r, resolved.self.view(), &ctx->self_id))
        return false;
    HopRequest hop{resolved.self.view(), resolved.holder.view(), std::nullopt, true};
    if (const ngx_table_elt_t* incoming = find_request_header(r, kHopHeader)) {
        ctx->incoming_hop = incoming->value;
        ctx->has_incoming_hop = 1;
        hop.incoming_hop = view(incoming->value);
    }
    ctx->hop_verdict = static_cast<ngx_uint_t>(decide_hop(hop));
    if (static_cast<HopVerdict>(ctx->hop_verdict) != HopVerdict::kHop) ctx->outcome = Outcome::kHopRefused;
    return true;
}

}  // namespace

const ngx_table_elt_t* find_request_header(ngx_http_request_t* r, std::string_view name) noexcept {
    for (ngx_list_part_t* part = &r->headers_in.headers.part; part != nullptr; part = part->next) {
        auto* headers = static_cast<ngx_table_elt_t*>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; ++i) {
            if (headers[i].key.len == name.size() &&
                ngx_strncasecmp(headers[i].key.data, reinterpret_cast<u_char*>(const_cast<char*>(name.data())),
                                name.size()) == 0) {
                return &headers[i];
            }
        }
    }
    return nullptr;
}

RequestCtx* decide_route(ngx_http_request_t* r, std::string_view name, std::string_view path, bool allow_hop) noexcept {
    auto* ctx = static_cast<RequestCtx*>(ngx_pcalloc(r->pool, sizeof(RequestCtx)));
    if (ctx == nullptr) return nullptr;
    ngx_http_set_ctx(r, ctx, ngx_http_tunnel_module);
    ctx->sent_at_start = r->connection->sent;
    ctx->decided = 1;
    ctx->name.data = reinterpret_cast<u_char*>(const_cast<char*>(name.data()));
    ctx->name.len = name.size();

    registry::Resolved resolved;
    ctx->outcome = resolve(r, ctx, name, path, &resolved);
    // A request that came by hop is counted where it entered the cluster: here only in the totals.
    if (find_request_header(r, kHopHeader) != nullptr) ctx->declared = 0;
    if (ctx->outcome == Outcome::kHopped) {
        if (!allow_hop) {
            ctx->outcome = Outcome::kNotConnected;  // tunnel_key routing: hops forward /NAME/..., see README
            return ctx;
        }
        if (!decide_hop_route(r, ctx, resolved)) return nullptr;
    }
    if (ctx->outcome == Outcome::kProxied || ctx->outcome == Outcome::kHopped)
        set_peer(ctx, resolved.address, resolved.port);
    return ctx;
}

RequestCtx* route_by_path(ngx_http_request_t* r) noexcept {
    if (RequestCtx* ctx = request_ctx(r); ctx != nullptr && ctx->decided) return ctx;
    const TargetPath split = split_target_path(view(r->uri));
    return decide_route(r, split.name, split.rest, true);
}

void log_route_refusal(ngx_http_request_t* r, const RequestCtx* ctx) noexcept {
    if (ctx->outcome != Outcome::kHopRefused) return;
    try {
        HopRequest hop{view(ctx->self_id), view(ctx->holder_id), std::nullopt, ctx->hop_header_read != 0};
        if (ctx->has_incoming_hop) hop.incoming_hop = view(ctx->incoming_hop);
        const std::string line =
            hop_refusal_message(static_cast<HopVerdict>(ctx->hop_verdict), view(ctx->name), hop);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "%*s", line.size(), line.data());
    } catch (...) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "tunnel: hop refused (no memory for the reason)");
    }
}

}  // namespace monitoring_proxy::tunnel::ngx
