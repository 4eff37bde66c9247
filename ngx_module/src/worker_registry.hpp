// The registry as one nginx worker sees it: a Reader opened after fork (init_process, after nginx switched to
// its worker user), never in the master. When the registry cannot be opened the worker keeps serving (every
// routed request answers 500) and retries at most once a second; errors are logged at most every 10 seconds.
#pragma once

#include "nginx.hpp"

#include "monitoring_proxy/reader.hpp"

#include <string_view>

namespace monitoring_proxy::tunnel::ngx {

void worker_registry_start(ngx_log_t* log, std::string_view dir) noexcept;
void worker_registry_stop() noexcept;

// The worker's reader, opened now if needed (throttled). nullptr when the registry is unreadable; the reason is
// already logged (rate-limited).
registry::Reader* worker_reader(ngx_log_t* log) noexcept;

// A read failed: logs (rate-limited) and drops the reader so that the next attempt reopens the registry.
void worker_registry_failed(ngx_log_t* log, std::string_view what) noexcept;

}  // namespace monitoring_proxy::tunnel::ngx
