// loadclient: thousands of reverse-forwarding SSH sessions in one process, driven by one epoll loop.
// See options.cpp for the command line; output is one JSON object per line on stdout.
#include <libssh/libssh.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "http_responder.hpp"
#include "load_session.hpp"
#include "options.hpp"

using loadclient::LoadSession;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }

double monotonic_now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double wall_now() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) continue;
        out += c;
    }
    return out;
}

// Thousands of sessions need thousands of descriptors.
void raise_fd_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

struct Counts {
    int established = 0, setup = 0, failed = 0, closed = 0, waiting = 0;
};

class LoadRun {
public:
    LoadRun(const loadclient::Options& o, ssh_key key)
        : options_(o), response_(loadclient::make_exporter_response(o.body_bytes)) {
        epoll_ = epoll_create1(EPOLL_CLOEXEC);
        for (int i = 0; i < o.sessions; ++i) {
            sessions_.push_back(std::make_unique<LoadSession>(i, options_, key, response_, totals_));
            waiting_.push_back(i);
        }
        registered_.assign(sessions_.size(), Registration{});
        reconnecting_.assign(sessions_.size(), false);
    }
    ~LoadRun() {
        for (auto& s : sessions_) s->stop();
        if (epoll_ >= 0) close(epoll_);
    }

    int run();

private:
    struct Registration {
        int fd = -1;
        std::uint32_t events = 0;
    };

    void start_waiting(double now);
    void drive(int i, double now, bool writable);
    void update_registration(int i);
    void after_transition(int i, LoadSession::State before, double now);
    Counts counts() const;
    void print_progress(double now, const char* event);
    void begin_reconnect(int i, double now);

    const loadclient::Options& options_;
    const std::string response_;
    loadclient::SessionTotals totals_;
    std::vector<std::unique_ptr<LoadSession>> sessions_;
    std::vector<Registration> registered_;
    std::deque<int> waiting_;                 // sessions not started yet, or due for a retry
    std::multimap<double, int> backing_off_;  // failed sessions by the time of their next attempt
    int epoll_ = -1;
    double started_ = 0;
    int in_setup_ = 0;
    int dropped_ = 0;
    // --reconnect-to: sessions the server closed that are being set up again, and since when (-1: none).
    std::vector<bool> reconnecting_;
    int pending_reconnects_ = 0;
    int reconnects_ = 0;
    double first_drop_ = -1;
};

// A session the server closed starts over at once against the first reconnect destination, with a fresh count
// of attempts: what a host's tunnel wrapper does when its proxy goes away.
void LoadRun::begin_reconnect(int i, double now) {
    LoadSession& s = *sessions_[i];
    if (pending_reconnects_ == 0) first_drop_ = now;
    ++pending_reconnects_;
    reconnecting_[i] = true;
    s.reset_attempts();
    s.set_destination(loadclient::reconnect_destination(options_.reconnect_to, 1));
    waiting_.push_back(i);
}

void LoadRun::update_registration(int i) {
    LoadSession& s = *sessions_[i];
    Registration& r = registered_[i];
    const int fd = s.fd();
    const std::uint32_t events = s.wanted_events();
    if (r.fd >= 0 && r.fd != fd) {
        epoll_ctl(epoll_, EPOLL_CTL_DEL, r.fd, nullptr);  // may already be gone with its closed socket
        r = Registration{};
    }
    if (fd < 0 || events == 0) {
        if (r.fd >= 0) epoll_ctl(epoll_, EPOLL_CTL_DEL, r.fd, nullptr);
        r = Registration{};
        return;
    }
    if (r.fd == fd && r.events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    if (epoll_ctl(epoll_, r.fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0) r = Registration{fd, events};
}

void LoadRun::after_transition(int i, LoadSession::State before, double now) {
    LoadSession& s = *sessions_[i];
    const bool was_setup = before == LoadSession::State::Connecting ||
                           before == LoadSession::State::Authenticating || before == LoadSession::State::Forwarding;
    if (was_setup && !s.in_setup()) --in_setup_;
    if (s.state() == before) return;
    if (s.state() == LoadSession::State::Established && reconnecting_[i]) {
        reconnecting_[i] = false;
        --pending_reconnects_;
        ++reconnects_;
    }
    if (s.state() == LoadSession::State::Established && options_.sessions <= 10) {
        std::printf("{\"event\":\"forwarded\",\"session\":%d,\"bind\":\"%s:%d\",\"setup_s\":%.6f,\"wall\":%.6f}\n", i,
                    json_escape(options_.forward.bind_address(i)).c_str(), options_.forward.bind_port(i),
                    s.setup_seconds(), wall_now());
        std::fflush(stdout);
    }
    if (s.state() == LoadSession::State::Failed) {
        const bool retry = s.attempts() <= options_.retries;
        if (options_.verbose || options_.sessions <= 10 || !retry)
            std::fprintf(stderr, "loadclient: session %d attempt %d to %s:%d: %s%s\n", i, s.attempts(),
                         s.destination().host.c_str(), s.destination().port, s.error().c_str(),
                         retry ? " (will retry)" : "");
        if (retry) {
            // Back off like a real client restarting (exponential, jittered): a server that sheds a connection
            // storm (tunneld caps unauthenticated connections) must not see every refused client come straight
            // back, and a storm must not burn all attempts within a second.
            const double base = std::min(5.0, 0.25 * static_cast<double>(1 << std::min(s.attempts() - 1, 5)));
            const double jitter = 0.5 + static_cast<double>(std::rand()) / RAND_MAX;
            backing_off_.emplace(now + base * jitter, i);
            if (reconnecting_[i])
                s.set_destination(loadclient::reconnect_destination(options_.reconnect_to, s.attempts() + 1));
        } else if (reconnecting_[i]) {
            reconnecting_[i] = false;  // out of attempts: counted as failed
            --pending_reconnects_;
        }
    }
    if (s.state() == LoadSession::State::Closed && before == LoadSession::State::Established) {
        if (options_.verbose || options_.sessions <= 10 || options_.reconnect_to.empty())
            std::fprintf(stderr, "loadclient: session %d: %s%s\n", i, s.error().c_str(),
                         options_.reconnect_to.empty() ? "" : " (reconnecting)");
        if (options_.reconnect_to.empty())
            ++dropped_;
        else
            begin_reconnect(i, now);
    }
}

void LoadRun::drive(int i, double now, bool writable) {
    LoadSession& s = *sessions_[i];
    const auto before = s.state();
    s.drive(now, writable);
    after_transition(i, before, now);
    update_registration(i);
}

void LoadRun::start_waiting(double now) {
    while (!backing_off_.empty() && backing_off_.begin()->first <= now) {
        waiting_.push_back(backing_off_.begin()->second);
        backing_off_.erase(backing_off_.begin());
    }
    while (!waiting_.empty() && in_setup_ < options_.concurrency) {
        const int i = waiting_.front();
        waiting_.pop_front();
        LoadSession& s = *sessions_[i];
        const auto before = LoadSession::State::Idle;
        s.start(now);
        if (s.in_setup()) ++in_setup_;
        after_transition(i, before, now);
        update_registration(i);
    }
}

Counts LoadRun::counts() const {
    Counts c;
    for (const auto& s : sessions_) {
        switch (s->state()) {
        case LoadSession::State::Established: ++c.established; break;
        case LoadSession::State::Failed: ++c.failed; break;
        case LoadSession::State::Closed: ++c.closed; break;
        case LoadSession::State::Idle: ++c.waiting; break;
        default: ++c.setup; break;
        }
    }
    c.failed -= static_cast<int>(std::count_if(waiting_.begin(), waiting_.end(), [&](int i) {
        return sessions_[i]->state() == LoadSession::State::Failed;
    }));
    c.failed -= static_cast<int>(backing_off_.size());
    c.closed -= static_cast<int>(std::count_if(waiting_.begin(), waiting_.end(), [&](int i) {
        return sessions_[i]->state() == LoadSession::State::Closed;  // about to reconnect
    }));
    c.waiting = static_cast<int>(waiting_.size() + backing_off_.size());
    return c;
}

void LoadRun::print_progress(double now, const char* event) {
    const Counts c = counts();
    std::printf("{\"event\":\"%s\",\"elapsed_s\":%.6f,\"sessions\":%d,\"forwarded\":%d,\"in_setup\":%d,"
                "\"waiting\":%d,\"failed\":%d,\"dropped\":%d,\"channels\":%llu,\"requests\":%llu,"
                "\"bytes_sent\":%llu,\"channel_errors\":%llu,\"initial_window\":%u,\"reconnects\":%d,"
                "\"reconnecting\":%d,\"reconnect_s\":%.6f,\"wall\":%.6f}\n",
                event, now - started_, options_.sessions, c.established, c.setup, c.waiting, c.failed, dropped_,
                static_cast<unsigned long long>(totals_.channels), static_cast<unsigned long long>(totals_.requests),
                static_cast<unsigned long long>(totals_.bytes_sent),
                static_cast<unsigned long long>(totals_.channel_errors), totals_.initial_window, reconnects_,
                pending_reconnects_, first_drop_ >= 0 ? now - first_drop_ : 0.0, wall_now());
    std::fflush(stdout);
}

int LoadRun::run() {
    if (epoll_ < 0) {
        std::perror("loadclient: epoll_create1");
        return 2;
    }
    started_ = monotonic_now();
    double next_progress = started_ + options_.progress_interval;
    double next_timeout_check = started_;
    double hold_until = -1;
    bool setup_over = false;
    std::vector<epoll_event> events(1024);
    std::vector<int> busy;
    while (!g_stop) {
        double now = monotonic_now();
        start_waiting(now);
        busy.clear();
        for (std::size_t i = 0; i < sessions_.size(); ++i)
            if (sessions_[i]->has_immediate_work()) busy.push_back(static_cast<int>(i));
        const int timeout_ms = busy.empty() ? 50 : 0;
        const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
        now = monotonic_now();
        for (int k = 0; k < n; ++k) {
            const int i = static_cast<int>(events[k].data.u32);
            drive(i, now, (events[k].events & EPOLLOUT) != 0);
        }
        for (int i : busy) drive(i, now, false);
        if (now >= next_timeout_check) {
            next_timeout_check = now + 0.1;
            for (std::size_t i = 0; i < sessions_.size(); ++i) {
                LoadSession& s = *sessions_[i];
                if (!s.in_setup()) continue;
                const auto before = s.state();
                s.check_timeout(now);
                after_transition(static_cast<int>(i), before, now);
                update_registration(static_cast<int>(i));
            }
        }
        if (!setup_over && in_setup_ == 0 && waiting_.empty() && backing_off_.empty()) {
            setup_over = true;
            print_progress(now, "all_forwarded");
            if (options_.hold_seconds >= 0) hold_until = now + options_.hold_seconds;
        }
        if (first_drop_ >= 0 && pending_reconnects_ == 0) {
            // Every session the server closed is set up again (or out of attempts): reconnect_s says how long
            // since the first of them was closed.
            print_progress(now, "all_reconnected");
            first_drop_ = -1;
        }
        if (options_.progress_interval > 0 && now >= next_progress) {
            next_progress = now + options_.progress_interval;
            print_progress(now, "progress");
        }
        if (setup_over && hold_until >= 0 && now >= hold_until) break;
    }
    const double end = monotonic_now();
    print_progress(end, "done");
    const Counts c = counts();
    return c.failed == 0 && dropped_ == 0 && c.established + c.closed == options_.sessions ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const loadclient::Options options = loadclient::parse_options(argc, argv);
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
    raise_fd_limit();
    if (ssh_init() != SSH_OK) {
        std::fprintf(stderr, "loadclient: ssh_init failed\n");
        return 2;
    }
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(options.identity.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
        std::fprintf(stderr, "loadclient: cannot read private key %s\n", options.identity.c_str());
        return 2;
    }
    int rc = 0;
    {
        LoadRun run(options, key);
        rc = run.run();
    }
    ssh_key_free(key);
    ssh_finalize();
    return rc;
}
