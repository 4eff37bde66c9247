// Configuration and per-request state of ngx_http_tunnel_module, shared by its source files.
#pragma once

#include "nginx.hpp"
#include "tunnel/outcome.hpp"

#include <netinet/in.h>

extern "C" {
extern ngx_module_t ngx_http_tunnel_module;
}

namespace monitoring_proxy::tunnel::ngx {

inline constexpr ngx_uint_t kDefaultMaxTargets = 4096;

// http{} level.
struct MainConf {
    ngx_str_t registry_dir;          // tunnel_registry; default $MONITORING_PROXY_REGISTRY or the schema default
    ngx_int_t max_targets;           // tunnel_max_targets: slots in the counters zone
    ngx_flag_t registry_needed;      // a `tunnel` upstream or an explicit tunnel_registry: open it in workers
    ngx_shm_zone_t* counters_zone;
    void* counters_memory;           // the CounterTable inside the zone (same address in every worker)
};

// upstream{} level (also created, unused, for every server{}).
struct UpstreamConf {
    ngx_flag_t enabled;              // the `tunnel` directive is in this upstream
    ngx_flag_t initialized;          // our init_upstream ran (not replaced by a later balancer)
    ngx_http_complex_value_t* key;   // tunnel_key: overrides the name taken from the path
};

// location{} level: the proxy's own pages (pages.cpp).
struct LocConf {
    ngx_http_complex_value_t* sd_address;  // tunnel_sd ADDRESS; nullptr: the request's Host
};

// One request through a `tunnel` upstream, allocated from r->pool when its route is decided (route.cpp).
struct RequestCtx {
    Outcome outcome;                 // decided before any connection is made
    ngx_flag_t decided;              // the route is decided (by $tunnel_uri, $tunnel_hop or init_peer)
    ngx_flag_t balanced;             // init_peer ran: the request is counted
    ngx_flag_t hop_header_read;      // $tunnel_hop was evaluated while hopping (proxy_set_header sends it)
    ngx_uint_t hop_verdict;          // HopVerdict, for a cluster-held target
    ngx_str_t self_id, holder_id;    // cluster: this node, the node holding the tunnel
    ngx_str_t incoming_hop;          // the request's Monitoring-Proxy-Hop value
    ngx_flag_t has_incoming_hop;
    ngx_str_t name;                  // requested name (as given; may be invalid)
    ngx_flag_t declared;             // the registry knows the name: count it per target
    ngx_str_t reply;                 // our own body for every outcome but kProxied
    ngx_flag_t keepalive;            // the client connection's keepalive before nginx's 500 path cleared it
    ngx_flag_t replacing_reply;      // the filters are swapping nginx's 500 page for `reply`
    ngx_flag_t reply_sent;
    off_t sent_at_start;             // r->connection->sent when the request reached us
    struct sockaddr_in peer_sockaddr;
    ngx_str_t peer_name;
    u_char peer_name_data[sizeof("127.255.255.255:65535")];
};

inline RequestCtx* request_ctx(ngx_http_request_t* r) noexcept {
    return static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_tunnel_module));
}

// route.cpp: the route decision, once per request.
// Path routing (/NAME/...): the request's ctx, decided now unless already. nullptr: out of memory.
RequestCtx* route_by_path(ngx_http_request_t* r) noexcept;
// Decides anew for `name` (tunnel_key routing passes allow_hop = false).
RequestCtx* decide_route(ngx_http_request_t* r, std::string_view name, std::string_view path, bool allow_hop) noexcept;
// Logs why a cluster-held target was not forwarded (outcome kHopRefused), at warn level.
void log_route_refusal(ngx_http_request_t* r, const RequestCtx* ctx) noexcept;
const ngx_table_elt_t* find_request_header(ngx_http_request_t* r, std::string_view name) noexcept;

// balancer.cpp
char* tunnel_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
// Checks that no later balancing directive replaced `tunnel` (nginx only warns about that).
ngx_int_t check_tunnel_upstreams(ngx_conf_t* cf) noexcept;

// counters_handler.cpp: `tunnel_counters` (location) answers the counters as JSON.
char* counters_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;

// pages.cpp: tunnel_sd, tunnel_metrics, tunnel_status (location) answer discovery, metrics and the status page.
char* sd_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
char* metrics_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
char* status_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;

// variables.cpp: $tunnel_name, $tunnel_uri, $tunnel_hop
ngx_int_t add_variables(ngx_conf_t* cf) noexcept;

// reply_filter.cpp: turns nginx's 500 page into our status and text for outcomes decided in init_peer.
ngx_int_t install_reply_filter(ngx_conf_t* cf) noexcept;

// counters_zone.cpp
ngx_int_t add_counters_zone(ngx_conf_t* cf, MainConf* mcf) noexcept;
ngx_int_t install_counters_log_handler(ngx_conf_t* cf) noexcept;

}  // namespace monitoring_proxy::tunnel::ngx
