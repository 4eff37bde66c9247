// The proxy's own pages, each a location handler rendering from the registry and the shared counters
// with the plain C++ in ngx_module/render/:
//
//   location = /-/sd      { tunnel_sd [ADDRESS]; }   Prometheus HTTP service discovery (JSON)
//   location = /-/metrics { tunnel_metrics; }        the proxy's metrics (Prometheus text format)
//   location = /-/status  { tunnel_status; }         status page (HTML; JSON with ?format=json or Accept)
//
// ADDRESS (variables allowed) is what discovery tells Prometheus to scrape; by default the request's Host.
#include "module.hpp"
#include "tunnel_api.hpp"
#include "worker_registry.hpp"

#include "discovery.hpp"
#include "metrics.hpp"
#include "status_page.hpp"
#include "monitoring_proxy/clock.hpp"

#include <exception>
#include <optional>
#include <string>
#include <string_view>

namespace monitoring_proxy::tunnel::ngx {
namespace {

constexpr int kStatusRefreshSeconds = 10;

std::string_view sv(const ngx_str_t& s) { return {reinterpret_cast<const char*>(s.data), s.len}; }

using monitoring_proxy::unix_now_ms;

CountersSnapshot request_snapshot(ngx_http_request_t* r) {
    auto table = request_counters(r);
    return table ? table->snapshot() : CountersSnapshot{};
}

// Runs `render` with this worker's registry reader; every failure is a logged 500, never an exception into C.
template <class Render>
ngx_int_t with_registry(ngx_http_request_t* r, const char* page, Render render) noexcept {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) return NGX_HTTP_NOT_ALLOWED;
    try {
        registry::Reader* reader = request_registry(r);
        if (reader == nullptr)
            return send_response(r, NGX_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "tunnel registry unavailable\n");
        try {
            return render(*reader);
        } catch (const lmdb::LmdbError& e) {
            worker_registry_failed(r->connection->log, e.what());
        } catch (const registry::RegistryError& e) {
            worker_registry_failed(r->connection->log, e.what());
        }
        return send_response(r, NGX_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "tunnel registry unavailable\n");
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "%s: %s", page, e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "%s: unexpected exception", page);
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

// The address Prometheus should scrape: the configured one, else the Host the request came with, else this
// server's own address.
std::string scrape_address(ngx_http_request_t* r) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_tunnel_module));
    ngx_str_t value{};
    if (lcf->sd_address && ngx_http_complex_value(r, lcf->sd_address, &value) == NGX_OK && value.len)
        return std::string(sv(value));
    if (r->headers_in.host && r->headers_in.host->value.len) return std::string(sv(r->headers_in.host->value));
    u_char buf[NGX_SOCKADDR_STRLEN];
    ngx_str_t local{sizeof(buf), buf};
    if (ngx_connection_local_sockaddr(r->connection, &local, 1) != NGX_OK) return "localhost";
    return std::string(sv(local));
}

ngx_int_t sd_handler(ngx_http_request_t* r) noexcept {
    return with_registry(r, "tunnel_sd", [r](registry::Reader& reader) {
        std::string error;
        auto filters = parse_label_filters(sv(r->args), error);
        if (!filters) return send_response(r, NGX_HTTP_BAD_REQUEST, "text/plain", error + "\n");
        DiscoveryOptions options{scrape_address(r), std::move(*filters)};
        return send_response(r, NGX_HTTP_OK, "application/json", render_discovery(reader.snapshot(), options));
    });
}

// The registry's cluster view for the pages; nullopt in single-node mode (no cluster state record).
std::optional<ClusterMetricsInput> cluster_input(registry::Reader& reader,
                                                 std::vector<registry::UnreadableRecord>& unreadable) {
    auto state = reader.cluster_state();
    if (!state) return std::nullopt;
    return ClusterMetricsInput{std::move(*state), reader.cluster_nodes(&unreadable), reader.cluster_tunnels(&unreadable)};
}

// /-/metrics and /-/status skip a record that does not decode instead of failing whole: the page that would
// report the problem must not be what it takes down. Each skipped record is an error.log line (and a gauge).
// /-/sd does not skip: a list without the target would make Prometheus drop its series, a failed one keeps
// Prometheus on its last good list.
void log_unreadable(ngx_http_request_t* r, const std::vector<registry::UnreadableRecord>& unreadable) {
    for (const auto& u : unreadable)
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "the registry record of %s \"%s\" is unreadable: %s; skipped",
                      u.kind.c_str(), u.name.c_str(), u.error.c_str());
}

ngx_int_t metrics_handler(ngx_http_request_t* r) noexcept {
    return with_registry(r, "tunnel_metrics", [r](registry::Reader& reader) {
        std::vector<registry::UnreadableRecord> unreadable;
        auto entries = reader.snapshot(&unreadable);
        auto counters = reader.counters();
        auto requests = request_snapshot(r);
        const auto cluster = cluster_input(reader, unreadable);
        log_unreadable(r, unreadable);
        return send_response(r, NGX_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                             render_metrics({entries, counters, requests, cluster ? &*cluster : nullptr,
                                             unreadable.size()}));
    });
}

bool wants_json(ngx_http_request_t* r) {
    std::string_view args = sv(r->args);
    for (std::string_view rest = args; !rest.empty();) {
        auto amp = rest.find('&');
        if (rest.substr(0, amp) == "format=json") return true;
        rest.remove_prefix(amp == std::string_view::npos ? rest.size() : amp + 1);
    }
#if (NGX_HTTP_HEADERS)
    if (r->headers_in.accept && sv(r->headers_in.accept->value).find("application/json") != std::string_view::npos)
        return true;
#endif
    return false;
}

ngx_int_t status_handler(ngx_http_request_t* r) noexcept {
    return with_registry(r, "tunnel_status", [r](registry::Reader& reader) {
        std::vector<registry::UnreadableRecord> unreadable;
        auto rows = status_rows(reader.snapshot(&unreadable), request_snapshot(r));
        auto invites = reader.invites(&unreadable);
        const auto cluster = cluster_input(reader, unreadable);
        const ClusterMetricsInput* c = cluster ? &*cluster : nullptr;
        log_unreadable(r, unreadable);
        if (wants_json(r))
            return send_response(r, NGX_HTTP_OK, "application/json",
                                 render_status_json(rows, unix_now_ms(), invites, c, unreadable));
        return send_response(r, NGX_HTTP_OK, "text/html; charset=utf-8",
                             render_status_html(rows, unix_now_ms(), kStatusRefreshSeconds, invites, c, unreadable));
    });
}

char* set_handler(ngx_conf_t* cf, ngx_http_handler_pt handler) noexcept {
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(
        reinterpret_cast<ngx_http_conf_ctx_t*>(cf->ctx)->loc_conf[ngx_http_core_module.ctx_index]);
    clcf->handler = handler;
    require_registry(cf);
    return NGX_CONF_OK;
}

}  // namespace

char* sd_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) noexcept {
    auto* lcf = static_cast<LocConf*>(conf);
    if (cf->args->nelts == 2) {
        auto* value = static_cast<ngx_str_t*>(cf->args->elts) + 1;
        lcf->sd_address = static_cast<ngx_http_complex_value_t*>(ngx_pcalloc(cf->pool, sizeof(ngx_http_complex_value_t)));
        if (lcf->sd_address == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
        ngx_http_compile_complex_value_t ccv;
        ngx_memzero(&ccv, sizeof(ccv));
        ccv.cf = cf;
        ccv.value = value;
        ccv.complex_value = lcf->sd_address;
        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) return static_cast<char*>(NGX_CONF_ERROR);
    }
    return set_handler(cf, sd_handler);
}

char* metrics_directive(ngx_conf_t* cf, ngx_command_t*, void*) noexcept { return set_handler(cf, metrics_handler); }

char* status_directive(ngx_conf_t* cf, ngx_command_t*, void*) noexcept { return set_handler(cf, status_handler); }

}  // namespace monitoring_proxy::tunnel::ngx
