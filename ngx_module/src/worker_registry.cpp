#include "worker_registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

#include "monitoring_proxy/lmdb_file_check.hpp"

namespace monitoring_proxy::tunnel::ngx {

namespace {

constexpr ngx_msec_t kReopenIntervalMs = 1000;
constexpr time_t kErrorLogIntervalS = 10;
constexpr ngx_msec_t kIdentityCheckIntervalMs = 1000;

// Which file an environment is: a registry directory that is removed and created again (restored from a
// backup, rebuilt after corruption) must be reopened, or the worker would read the old, unlinked file forever.
struct FileIdentity {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const FileIdentity&) const = default;
};

FileIdentity identity_of(const std::string& path) noexcept {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return {};
    return {st.st_dev, st.st_ino};
}

// A data file held open to notice, on every request and for the price of one fstat, that it shrank: LMDB
// files never shrink, so a smaller file was truncated in place (`cp backup data.mdb` truncates first), and
// reading its map past the new end would kill the worker with SIGBUS.
struct WatchedFile {
    int fd = -1;
    off_t size = 0;

    void watch(const std::string& path) noexcept {
        close();
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        size = (fd >= 0 && ::fstat(fd, &st) == 0) ? st.st_size : 0;
    }
    void close() noexcept {
        if (fd >= 0) ::close(fd);
        fd = -1;
        size = 0;
    }
    bool shrunk() noexcept {
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0) return false;
        if (st.st_size < size) return true;
        size = st.st_size;
        return false;
    }
};

// One worker process, one reader: nginx workers are single-threaded.
struct WorkerRegistry {
    std::string dir;
    std::optional<registry::Reader> reader;
    bool configured = false;
    ngx_msec_t next_open_at = 0;
    time_t last_error_logged = 0;
    ngx_uint_t suppressed_errors = 0;
    ngx_msec_t next_identity_check = 0;
    FileIdentity declared_file, live_file;  // {} while unknown (the live environment may come later)
    WatchedFile declared_data, live_data;
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

std::optional<std::string> any_truncated() {
    if (auto e = lmdb::truncated_lmdb_file(g_registry.dir + "/data.mdb")) return e;
    return lmdb::truncated_lmdb_file(g_registry.dir + "/" + registry::kLiveSubdir + "/data.mdb");
}

void try_open(ngx_log_t* log) noexcept {
    g_registry.next_open_at = ngx_current_msec + kReopenIntervalMs;
    try {
        g_registry.reader.reset();  // close the old environment first: LMDB forbids opening one twice
        g_registry.declared_data.watch(g_registry.dir + "/data.mdb");
        g_registry.live_data.watch(g_registry.dir + "/" + registry::kLiveSubdir + "/data.mdb");
        g_registry.declared_file = identity_of(g_registry.dir + "/data.mdb");
        g_registry.live_file = identity_of(g_registry.dir + "/" + registry::kLiveSubdir + "/data.mdb");
        g_registry.next_identity_check = ngx_current_msec + kIdentityCheckIntervalMs;
        // Mapping a truncated file would kill this worker with SIGBUS on the first read (and every worker
        // the master starts after it): refuse it like any other unreadable registry.
        if (auto truncated = any_truncated()) throw std::runtime_error(*truncated);
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

// At most once a second: has either environment been replaced by another file since it was opened, or been
// truncated in place (reading it would raise SIGBUS)?
bool registry_replaced() noexcept {
    if (static_cast<ngx_msec_int_t>(ngx_current_msec - g_registry.next_identity_check) < 0) return false;
    g_registry.next_identity_check = ngx_current_msec + kIdentityCheckIntervalMs;
    try {
        const FileIdentity declared = identity_of(g_registry.dir + "/data.mdb");
        const FileIdentity live = identity_of(g_registry.dir + "/" + registry::kLiveSubdir + "/data.mdb");
        if (g_registry.live_file == FileIdentity{} && !(live == FileIdentity{})) {  // created after we opened
            g_registry.live_file = live;
            g_registry.live_data.watch(g_registry.dir + "/" + registry::kLiveSubdir + "/data.mdb");
        }
        return !(declared == g_registry.declared_file) || !(live == g_registry.live_file) || any_truncated();
    } catch (...) {
        return false;
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
    g_registry.declared_data.close();
    g_registry.live_data.close();
    g_registry.configured = false;
}

registry::Reader* worker_reader(ngx_log_t* log) noexcept {
    if (g_registry.reader && (g_registry.declared_data.shrunk() || g_registry.live_data.shrunk())) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0, "tunnel registry \"%*s\" was truncated, reopening it",
                      g_registry.dir.size(), g_registry.dir.data());
        try_open(log);
        return g_registry.reader ? &*g_registry.reader : nullptr;
    }
    if (g_registry.reader && registry_replaced()) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0, "tunnel registry \"%*s\" was replaced, reopening it",
                      g_registry.dir.size(), g_registry.dir.data());
        try_open(log);
        return g_registry.reader ? &*g_registry.reader : nullptr;
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
