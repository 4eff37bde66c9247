// tunneld: accepts SSH connections that only carry reverse port forwards and records each live forward in the
// monitoring-proxy registry. Threads: main (signals, counter flushes), one acceptor, a few workers.
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "session/acceptor.hpp"
#include "session/host_keys.hpp"
#include "log.hpp"
#include "options.hpp"
#include "server_context.hpp"
#include "session/worker.hpp"

#ifndef TUNNELD_VERSION
#define TUNNELD_VERSION "0.0.0"
#endif

namespace {

using namespace tunneld;
namespace reg = monitoring_proxy::registry;

unsigned worker_count() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : std::min(n, 4u);
}

void register_instance(ServerContext& ctx) {
    auto swept = ctx.registry.with([](reg::Registry& r) { return r.sweep_dead_instances(); });
    for (const auto& name : swept) log_line("swept stale tunnel target=" + name + " (its tunneld instance is gone)");
    ctx.registry.with([&](reg::Registry& r) {
        r.update_live([&](reg::LiveTxn& txn) { txn.put_instance(ctx.instance_id, reg::current_instance()); });
        return 0;
    });
}

void unregister_instance(ServerContext& ctx) noexcept {
    try {
        ctx.registry.with([&](reg::Registry& r) {
            r.update_live([&](reg::LiveTxn& txn) { txn.remove_instance(ctx.instance_id); });
            return 0;
        });
    } catch (const std::exception& e) {
        log_line(std::string("registry error at shutdown: ") + e.what());
    }
}

// The SSH server side: only the key types tunneld accepts, never /etc/ssh/libssh_server_config, the host keys.
ssh_bind make_ssh_bind(const Options& options) {
    ssh_bind bind = ssh_bind_new();
    if (bind == nullptr) throw std::runtime_error("ssh_bind_new failed (out of memory)");
    bool no = false;
    if (ssh_bind_options_set(bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK ||
        ssh_bind_options_set(bind, SSH_BIND_OPTIONS_PUBKEY_ACCEPTED_KEY_TYPES,
                             "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,"
                             "rsa-sha2-512,rsa-sha2-256") != SSH_OK) {
        std::string why = ssh_get_error(bind);
        ssh_bind_free(bind);
        throw std::runtime_error("cannot configure the SSH server: " + why);
    }
    try {
        load_host_keys(bind, options.host_key_dir);
    } catch (...) {
        ssh_bind_free(bind);
        throw;
    }
    return bind;
}

void log_started(const Options& options, const ServerContext& ctx, const std::string& registry_dir) {
    log_line("started version=" TUNNELD_VERSION " listen=" + options.listen_host + ":" +
             std::to_string(options.listen_port) + " registry=" + registry_dir +
             " port_range=" + std::to_string(options.port_range.lo) + "-" + std::to_string(options.port_range.hi) +
             " workers=" + std::to_string(ctx.workers.size()) + " instance=" + std::to_string(ctx.instance_id) +
             " keepalive=" + std::to_string(options.keepalive_seconds) + "x" + std::to_string(options.keepalive_max) +
             " max_startups=" + std::to_string(options.preauth.drop_start) + ":" +
             std::to_string(options.preauth.drop_rate_percent) + ":" + std::to_string(options.preauth.full) +
             " per_source_max_startups=" + std::to_string(options.preauth.per_source));
}

int run(const Options& options) {
    // Signals are taken synchronously by the main thread only: block them before any thread starts.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) throw std::runtime_error("cannot block signals");
    std::signal(SIGPIPE, SIG_IGN);

    if (ssh_init() != SSH_OK) throw std::runtime_error("ssh_init failed (libssh's crypto library did not start)");
    reg::OpenOptions open_options;
    open_options.dir = reg::resolve_dir(options.registry_flag);
    open_options.recreate_other_live = true;  // live state of another build describes nothing this one serves
    auto registry = reg::Registry::open(open_options);
    for (const auto& notice : registry.notices()) log_line("registry " + open_options.dir + ": " + notice);
    auto ctx = std::make_unique<ServerContext>(options, std::move(registry));
    register_instance(*ctx);
    ctx->load_authorized_keys();
    ctx->cluster = start_cluster(*ctx);

    ssh_bind bind = make_ssh_bind(options);

    for (unsigned i = 0; i < worker_count(); ++i)
        ctx->workers.push_back(std::make_unique<Worker>(*ctx, static_cast<int>(i)));
    Acceptor acceptor(*ctx, bind);
    for (auto& w : ctx->workers) w->start();
    acceptor.start();
    log_started(options, *ctx, open_options.dir);

    int stop_signal = 0;
    while (stop_signal == 0) {
        timespec one_second{1, 0};
        int sig = sigtimedwait(&signals, nullptr, &one_second);
        if (sig == SIGHUP) {
            log_line("SIGHUP: re-reading authorized_keys");
            ctx->load_authorized_keys();
        } else if (sig == SIGTERM || sig == SIGINT) {
            stop_signal = sig;
        }
        ctx->counters.flush(ctx->registry);
    }

    log_line(std::string("stopping on ") + (stop_signal == SIGTERM ? "SIGTERM" : "SIGINT"));
    acceptor.stop();
    for (auto& w : ctx->workers) w->post(Mail{Mail::Type::kStop});
    for (auto& w : ctx->workers) w->join();
    ctx->cluster.reset();  // after the workers: their withdrawals are sent, then the lease is revoked
    ctx->counters.flush(ctx->registry);
    unregister_instance(*ctx);
    ctx->workers.clear();
    ssh_bind_free(bind);
    ssh_finalize();
    log_line("stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    try {
        options = parse_options(std::vector<std::string>(argv + 1, argv + argc));
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        const char* etcd_env = std::getenv("MONITORING_PROXY_ETCD");
        if (!options.help && !options.version) check_cluster_options(options, etcd_env ? etcd_env : "", host);
    } catch (const UsageError& e) {
        std::cerr << "tunneld: " << e.what() << "\n(try tunneld --help)\n";
        return 1;
    }
    if (options.help) {
        std::cout << usage_text();
        return 0;
    }
    if (options.version) {
        std::cout << "tunneld " TUNNELD_VERSION " (libssh " << ssh_version(0) << ")\n";
        return 0;
    }
    try {
        return run(options);
    } catch (const std::exception& e) {
        log_line(std::string("fatal: ") + e.what());
        return 2;
    }
}
