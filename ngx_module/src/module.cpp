// ngx_http_tunnel_module: directives, configuration and process hooks. The request path lives in balancer.cpp,
// the variables in variables.cpp, the counters in counters_zone.cpp.
//
//   tunnel_registry DIR;        http      registry directory (default: $MONITORING_PROXY_REGISTRY at startup,
//                                         else /var/lib/monitoring-proxy/registry)
//   tunnel_max_targets N;       http      per-target counter slots in shared memory (default 4096)
//   tunnel;                     upstream  peers come from the registry; must precede `keepalive`
//   tunnel_key VALUE;           upstream  route by VALUE (variables allowed) instead of the first path segment
//   tunnel_counters;            location  answer the shared per-target counters as JSON
//   tunnel_sd [ADDRESS];        location  Prometheus HTTP service discovery (pages.cpp)
//   tunnel_metrics;             location  the proxy's own metrics
//   tunnel_status;              location  the status page (HTML, or JSON)
#include "module.hpp"
#include "tunnel_api.hpp"
#include "worker_registry.hpp"

#include "monitoring_proxy/registry.hpp"

#include <cstring>
#include <exception>
#include <string>

namespace monitoring_proxy::tunnel::ngx {

namespace {

void* create_main_conf(ngx_conf_t* cf) noexcept {
    auto* mcf = static_cast<MainConf*>(ngx_pcalloc(cf->pool, sizeof(MainConf)));
    if (mcf == nullptr) return nullptr;
    mcf->max_targets = NGX_CONF_UNSET;
    return mcf;
}

char* init_main_conf(ngx_conf_t* cf, void* conf) noexcept {
    auto* mcf = static_cast<MainConf*>(conf);
    if (mcf->registry_dir.len == 0) {
        try {
            const std::string dir = registry::resolve_dir("");
            mcf->registry_dir.data = static_cast<u_char*>(ngx_pnalloc(cf->pool, dir.size()));
            if (mcf->registry_dir.data == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
            std::memcpy(mcf->registry_dir.data, dir.data(), dir.size());
            mcf->registry_dir.len = dir.size();
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "tunnel_registry: %s", e.what());
            return static_cast<char*>(NGX_CONF_ERROR);
        }
    } else {
        mcf->registry_needed = 1;
    }
    ngx_conf_init_value(mcf->max_targets, static_cast<ngx_int_t>(kDefaultMaxTargets));
    if (mcf->max_targets < 1 || mcf->max_targets > 1000000) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "tunnel_max_targets must be between 1 and 1000000, not %i",
                      mcf->max_targets);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    if (add_counters_zone(cf, mcf) != NGX_OK) return static_cast<char*>(NGX_CONF_ERROR);
    return NGX_CONF_OK;
}

void* create_loc_conf(ngx_conf_t* cf) noexcept {
    return ngx_pcalloc(cf->pool, sizeof(LocConf));  // sd_address = nullptr
}

void* create_srv_conf(ngx_conf_t* cf) noexcept {
    return ngx_pcalloc(cf->pool, sizeof(UpstreamConf));  // key = nullptr, flags 0
}

ngx_int_t preconfiguration(ngx_conf_t* cf) noexcept { return add_variables(cf); }

ngx_int_t postconfiguration(ngx_conf_t* cf) noexcept {
    if (check_tunnel_upstreams(cf) != NGX_OK) return NGX_ERROR;
    if (install_reply_filter(cf) != NGX_OK) return NGX_ERROR;
    return install_counters_log_handler(cf);
}

MainConf* cycle_main_conf(ngx_cycle_t* cycle) noexcept {
    if (cycle->conf_ctx[ngx_http_module.index] == nullptr) return nullptr;  // no http{} block
    return static_cast<MainConf*>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_tunnel_module));
}

// Runs in each worker after fork and after nginx switched to its worker user: the reader slot must belong to
// the worker, and the master never opens the registry.
ngx_int_t init_process(ngx_cycle_t* cycle) noexcept {
    MainConf* mcf = cycle_main_conf(cycle);
    if (mcf == nullptr || !mcf->registry_needed) return NGX_OK;
    worker_registry_start(cycle->log, view(mcf->registry_dir));
    return NGX_OK;  // an unreadable registry is a per-request 500, not a dead worker
}

void exit_process(ngx_cycle_t*) noexcept { worker_registry_stop(); }

char* registry_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    char* rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    auto* mcf = static_cast<MainConf*>(conf);
    if (mcf->registry_dir.len == 0 || mcf->registry_dir.data[0] != '/') {
        return const_cast<char*>("needs an absolute directory path");
    }
    return NGX_CONF_OK;
}

ngx_command_t commands[] = {
    {ngx_string("tunnel_registry"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, registry_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, registry_dir), nullptr},
    {ngx_string("tunnel_max_targets"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_num_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, max_targets), nullptr},
    {ngx_string("tunnel"), NGX_HTTP_UPS_CONF | NGX_CONF_NOARGS, tunnel_directive, NGX_HTTP_SRV_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("tunnel_key"), NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1, ngx_http_set_complex_value_slot,
     NGX_HTTP_SRV_CONF_OFFSET, offsetof(UpstreamConf, key), nullptr},
    {ngx_string("tunnel_counters"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, counters_directive, 0, 0, nullptr},
    {ngx_string("tunnel_sd"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, sd_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("tunnel_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, metrics_directive, NGX_HTTP_LOC_CONF_OFFSET,
     0, nullptr},
    {ngx_string("tunnel_status"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, status_directive, NGX_HTTP_LOC_CONF_OFFSET,
     0, nullptr},
    ngx_null_command,
};

ngx_http_module_t module_ctx = {
    preconfiguration, postconfiguration, create_main_conf, init_main_conf,
    create_srv_conf,  nullptr,           create_loc_conf,  nullptr,
};

}  // namespace

void require_registry(ngx_conf_t* cf) noexcept { main_conf<MainConf>(cf, ngx_http_tunnel_module)->registry_needed = 1; }

}  // namespace monitoring_proxy::tunnel::ngx

// The module object nginx finds through ngx_modules[] (ngx_http_tunnel_module_modules.c): C linkage and
// default visibility, while the rest of the C++ code stays hidden.
extern "C" {
__attribute__((visibility("default"))) ngx_module_t ngx_http_tunnel_module = {
    NGX_MODULE_V1,
    &monitoring_proxy::tunnel::ngx::module_ctx,
    monitoring_proxy::tunnel::ngx::commands,
    NGX_HTTP_MODULE,
    nullptr,                                          // init master
    nullptr,                                          // init module
    monitoring_proxy::tunnel::ngx::init_process,
    nullptr,                                          // init thread
    nullptr,                                          // exit thread
    monitoring_proxy::tunnel::ngx::exit_process,
    nullptr,                                          // exit master
    NGX_MODULE_V1_PADDING};
}
