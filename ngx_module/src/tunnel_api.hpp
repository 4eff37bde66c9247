// What the module offers to the handlers that render its state (/-/metrics, /-/status, /-/sd), which
// are compiled into this same module. All of it is per worker and for the event loop thread only.
#pragma once

#include "nginx.hpp"

#include "monitoring_proxy/reader.hpp"
#include "tunnel/counters.hpp"

#include <optional>
#include <string_view>

namespace monitoring_proxy::tunnel::ngx {

// For the directives of those handlers: workers open the registry only when something needs it (a `tunnel`
// upstream, an explicit tunnel_registry, or a handler that calls this while its directive is parsed).
void require_registry(ngx_conf_t* cf) noexcept;

// The counters shared by all workers (snapshot() for a page, find(name) for one target). nullopt only when the
// module is not configured in this http{} block.
std::optional<CounterTable> request_counters(ngx_http_request_t* r) noexcept;

// This worker's registry reader (Reader::snapshot(), Reader::counters()), opened lazily. nullptr when the
// registry is unreadable; the reason is logged, rate-limited. Reader methods throw LmdbError: catch, answer
// 500, and report it with worker_registry_failed() (worker_registry.hpp).
registry::Reader* request_registry(ngx_http_request_t* r) noexcept;

// Answers `status` with `body` (copied into the request pool) as the whole response; returns what a content
// handler returns. Discards any request body first.
ngx_int_t send_response(ngx_http_request_t* r, ngx_uint_t status, std::string_view content_type,
                        std::string_view body) noexcept;

}  // namespace monitoring_proxy::tunnel::ngx
