// The shared memory zone holding the per-target counters, and the log-phase handler that fills it: the log
// phase sees the final status and byte count of every request the balancer decided on.
#include "module.hpp"
#include "tunnel_api.hpp"
#include "worker_registry.hpp"

#include "tunnel/counters.hpp"

namespace monitoring_proxy::tunnel::ngx {

namespace {

ngx_int_t init_zone(ngx_shm_zone_t* zone, void* old_data) noexcept {
    auto* mcf = static_cast<MainConf*>(zone->data);
    if (old_data != nullptr) {  // reload with an unchanged zone: keep counting where the old cycle stopped
        mcf->counters_memory = static_cast<MainConf*>(old_data)->counters_memory;
        return NGX_OK;
    }
    auto* pool = reinterpret_cast<ngx_slab_pool_t*>(zone->shm.addr);
    if (zone->shm.exists) {
        mcf->counters_memory = pool->data;
        return NGX_OK;
    }
    const std::size_t bytes = CounterTable::bytes_for(static_cast<std::uint32_t>(mcf->max_targets));
    void* memory = ngx_slab_alloc(pool, bytes);  // page-aligned, as the table needs
    if (memory == nullptr || !CounterTable::format(memory, bytes)) {
        ngx_log_error(NGX_LOG_EMERG, zone->shm.log, 0, "tunnel: cannot lay out %uz bytes of counters in zone \"%V\"",
                      bytes, &zone->shm.name);
        return NGX_ERROR;
    }
    pool->data = memory;
    mcf->counters_memory = memory;
    return NGX_OK;
}

ngx_int_t log_handler(ngx_http_request_t* r) noexcept {
    const RequestCtx* ctx = request_ctx(r);
    if (ctx == nullptr || !ctx->balanced) return NGX_OK;  // a variable decided, but no tunnel upstream ran
    auto table = request_counters(r);
    if (!table) return NGX_OK;

    const ngx_time_t* tp = ngx_timeofday();
    const ngx_msec_int_t elapsed =
        static_cast<ngx_msec_int_t>((tp->sec - r->start_sec) * 1000 + (tp->msec - r->start_msec));
    RequestRecord record;
    record.status = static_cast<unsigned>(r->err_status ? r->err_status : r->headers_out.status);
    record.outcome = final_outcome(ctx->outcome, record.status);
    record.bytes_sent = static_cast<std::uint64_t>(r->connection->sent - ctx->sent_at_start);
    record.duration_ms = static_cast<std::uint64_t>(elapsed > 0 ? elapsed : 0);
    record.started_unix_ms = static_cast<std::int64_t>(r->start_sec) * 1000 + static_cast<std::int64_t>(r->start_msec);
    // Only names the registry knows get their own slot; hostile names only move the totals.
    table->record(ctx->declared ? view(ctx->name) : std::string_view{}, record);
    return NGX_OK;
}

}  // namespace

ngx_int_t add_counters_zone(ngx_conf_t* cf, MainConf* mcf) noexcept {
    static ngx_str_t name = ngx_string("tunnel_counters");
    const std::size_t table = CounterTable::bytes_for(static_cast<std::uint32_t>(mcf->max_targets));
    // Room for the slab allocator's own bookkeeping (a page descriptor per page, its header) and rounding.
    const std::size_t size = ngx_align(table + table / 16 + 16 * ngx_pagesize, ngx_pagesize);
    mcf->counters_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_tunnel_module);
    if (mcf->counters_zone == nullptr) return NGX_ERROR;
    mcf->counters_zone->init = init_zone;
    mcf->counters_zone->data = mcf;
    return NGX_OK;
}

ngx_int_t install_counters_log_handler(ngx_conf_t* cf) noexcept {
    auto* cmcf = main_conf<ngx_http_core_main_conf_t>(cf, ngx_http_core_module);
    auto* h = static_cast<ngx_http_handler_pt*>(ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers));
    if (h == nullptr) return NGX_ERROR;
    *h = log_handler;
    return NGX_OK;
}

std::optional<CounterTable> request_counters(ngx_http_request_t* r) noexcept {
    auto* mcf = main_conf<MainConf>(r, ngx_http_tunnel_module);
    if (mcf == nullptr || mcf->counters_memory == nullptr) return std::nullopt;
    return CounterTable::attach(mcf->counters_memory);
}

registry::Reader* request_registry(ngx_http_request_t* r) noexcept {
    return worker_reader(r->connection->log);
}

}  // namespace monitoring_proxy::tunnel::ngx
