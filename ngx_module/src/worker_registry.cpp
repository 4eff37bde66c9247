#include "worker_registry.hpp"

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace monitoring_proxy::tunnel::ngx {

namespace {

constexpr ngx_msec_t kReopenIntervalMs = 1000;
constexpr time_t kErrorLogIntervalS = 10;

// One worker process, one reader: nginx workers are single-threaded.
struct WorkerRegistry {
    std::string dir;
    std::optional<registry::Reader> reader;
    bool configured = false;
    ngx_msec_t next_open_at = 0;
    time_t last_error_logged = 0;
    ngx_uint_t suppressed_errors = 0;
};
WorkerRegistry g_registry;

void log_rate_limited(ngx_log_t* log, std::string_view what) noexcept {
    const time_t now = ngx_time();
    if (g_registry.last_error_logged != 0 && now - g_registry.last_error_logged < kErrorLogIntervalS) {
        ++g_registry.suppressed_errors;
        return;
    }
    if (g_registry.suppressed_errors == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "tunnel registry \"%*s\" unreadable: %*s", g_registry.dir.size(),
                      g_registry.dir.data(), what.size(), what.data());
    } else {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tunnel registry \"%*s\" unreadable: %*s (%ui similar errors since the last report)",
                      g_registry.dir.size(), g_registry.dir.data(), what.size(), what.data(),
                      g_registry.suppressed_errors);
    }
    g_registry.last_error_logged = now;
    g_registry.suppressed_errors = 0;
}

void try_open(ngx_log_t* log) noexcept {
    g_registry.next_open_at = ngx_current_msec + kReopenIntervalMs;
    try {
        g_registry.reader.reset();  // close the old environment first: LMDB forbids opening one twice
        // A truncated data file is refused here (lmdb::Env checks before mapping): mapping it would kill this
        // worker with SIGBUS on the first read, and every worker the master starts after it.
        g_registry.reader.emplace(g_registry.dir);
        ngx_log_error(NGX_LOG_INFO, log, 0, "tunnel registry \"%*s\" opened", g_registry.dir.size(),
                      g_registry.dir.data());
    } catch (const std::exception& e) {
        g_registry.reader.reset();
        log_rate_limited(log, e.what());
    } catch (...) {
        g_registry.reader.reset();
        log_rate_limited(log, "unexpected exception");
    }
}

}  // namespace

void worker_registry_start(ngx_log_t* log, std::string_view dir) noexcept {
    try {
        g_registry.dir.assign(dir);
        g_registry.configured = true;
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, log, 0, "tunnel registry: out of memory");
        return;
    }
    try_open(log);
}

void worker_registry_stop() noexcept {
    // Closing the environment releases this process's reader slot, so reloads do not leak slots.
    g_registry.reader.reset();
    g_registry.configured = false;
}

registry::Reader* worker_reader(ngx_log_t* log) noexcept {
    if (g_registry.reader) {
        const registry::Freshness freshness = g_registry.reader->freshness();
        if (freshness != registry::Freshness::kCurrent) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0, "tunnel registry \"%*s\" was %s, reopening it",
                          g_registry.dir.size(), g_registry.dir.data(),
                          freshness == registry::Freshness::kTruncated ? "truncated" : "replaced");
            try_open(log);
            return g_registry.reader ? &*g_registry.reader : nullptr;
        }
    }
    if (!g_registry.reader && g_registry.configured &&
        static_cast<ngx_msec_int_t>(ngx_current_msec - g_registry.next_open_at) >= 0) {
        try_open(log);
    }
    if (!g_registry.reader) {
        if (!g_registry.configured) log_rate_limited(log, "not opened in this process");
        return nullptr;
    }
    return &*g_registry.reader;
}

void worker_registry_failed(ngx_log_t* log, std::string_view what) noexcept {
    log_rate_limited(log, what);
    g_registry.reader.reset();
    g_registry.next_open_at = ngx_current_msec + kReopenIntervalMs;
}

}  // namespace monitoring_proxy::tunnel::ngx
