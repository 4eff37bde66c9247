#include "session/worker.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "log.hpp"

namespace tunneld {

using Counter = monitoring_proxy::registry::TunneldCounter;

namespace {

constexpr auto kLoginGraceTime = std::chrono::seconds(20);
constexpr int kMaxPollRoundsPerWakeup = 16;  // 16 x libssh's 4 KB socket read

std::atomic<std::uint64_t> g_next_id{1};

}  // namespace

std::uint64_t next_object_id() {
    return g_next_id.fetch_add(1);
}

std::size_t Session::live_forwards() const {
    return static_cast<std::size_t>(
        std::count_if(forwards.begin(), forwards.end(), [](const auto& f) { return !f->dead; }));
}

Worker::Worker(ServerContext& ctx, int index) : ctx_(ctx), index_(index), scratch_(kScratchBytes) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    mail_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || mail_fd_ < 0)
        throw std::runtime_error("worker " + std::to_string(index) + ": cannot create its event loop: " +
                                 std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &mailbox_;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, mail_fd_, &ev) != 0) {
        throw std::runtime_error("worker " + std::to_string(index) + ": cannot watch its mailbox (fd " +
                                 std::to_string(mail_fd_) + "): " + std::strerror(errno));
    }
}

Worker::~Worker() {
    if (thread_.joinable()) thread_.join();
    close_fd(epoll_fd_, "worker epoll");
    close_fd(mail_fd_, "worker mailbox");
}

void Worker::start() {
    thread_ = std::thread([this] { run(); });
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

void Worker::post(Mail mail) {
    {
        std::lock_guard lock(mail_mu_);
        mail_.push_back(std::move(mail));
    }
    std::uint64_t one = 1;
    // Only EAGAIN can fail here (the counter is near 2^64): the worker is woken already then.
    if (::write(mail_fd_, &one, sizeof one) < 0 && errno != EAGAIN)
        log_line("worker " + std::to_string(index_) + " mailbox fd " + std::to_string(mail_fd_) +
                 " write: " + std::strerror(errno));
}

void Worker::run() noexcept {
    next_timer_ = Clock::now() + kWorkerTimerPeriod;
    next_keepalive_ = Clock::now() + std::chrono::seconds(ctx_.options.keepalive_seconds);
    while (true) {
        try {
            loop_once();
        } catch (const std::exception& e) {
            log_line(std::string("worker ") + std::to_string(index_) + " error: " + e.what());
        }
        if (stopping_ && sessions_.empty()) break;
    }
}

void Worker::loop_once() {
    auto now = Clock::now();
    int timeout_ms = static_cast<int>(
        std::clamp<long>(std::chrono::duration_cast<std::chrono::milliseconds>(next_timer_ - now).count(), 0, kWorkerTimerPeriod.count()));
    epoll_event events[128];
    int n = epoll_wait(epoll_fd_, events, 128, timeout_ms);  // level-triggered: what is left comes back next round
    if (n < 0 && errno != EINTR)
        log_line("worker " + std::to_string(index_) + " epoll_wait fd " + std::to_string(epoll_fd_) + ": " +
                 std::strerror(errno));
    for (int i = 0; i < n; ++i) {
        auto* p = static_cast<Pollable*>(events[i].data.ptr);
        if (p->dead) continue;
        std::uint32_t ev = events[i].events;
        switch (p->kind) {
            case Pollable::Kind::kMailbox: {
                std::uint64_t count;
                // EAGAIN only: another round read the counter already.
                if (::read(mail_fd_, &count, sizeof count) < 0 && errno != EAGAIN)
                    log_line("worker mailbox fd " + std::to_string(mail_fd_) + " read: " + std::strerror(errno));
                handle_mail();
                break;
            }
            case Pollable::Kind::kListener:
                accept_connections(*static_cast<Forward*>(p));
                break;
            case Pollable::Kind::kRelay:
                relay_event(*static_cast<Relay*>(p), ev);
                break;
            case Pollable::Kind::kSession:
                poll_session(*static_cast<Session*>(p), ev);
                break;
        }
    }

    progress_opening();
    recheck_windows();
    process_relay_work();

    std::vector<Session*> suspects;
    suspects.swap(suspects_);
    for (Session* s : suspects) check_session(*s);

    if (Clock::now() >= next_timer_) {
        on_timer();
        next_timer_ = Clock::now() + kWorkerTimerPeriod;
    }
    collect_garbage();
    // Only sessions that polled or queued output can have changed whether libssh has output pending.
    std::vector<Session*> touched;
    touched.swap(touched_);
    for (Session* s : touched) {
        s->touched = false;
        update_session_interest(*s);
    }
}

void Worker::relay_event(Relay& r, std::uint32_t ev) {
    if (ev & EPOLLRDHUP) relay_scraper_hup(r);
    if (!r.dead && (ev & EPOLLOUT)) relay_writable(r);
    if (!r.dead && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) relay_readable(r);
    // HUP/ERR are reported whatever the interest mask: a relay that cannot consume them now (channel still
    // opening, window closed, EOF already read) would make epoll spin. The scraper is gone.
    if (!r.dead && (ev & (EPOLLHUP | EPOLLERR))) {
        if (!(ev & EPOLLERR)) relay_maybe_finish(r);  // the orderly end: both sides shut down
        if (!r.dead) relay_close(r, RelayEnd::kFailed, "scraper connection closed or reset");
    }
    queue_relay(r);
}

// Relays touched by callbacks or I/O: adjust epoll interest, finish completed ones. The list can grow while we
// work through it (libssh calls poll), so take it in batches.
void Worker::process_relay_work() {
    for (int round = 0; round < 4 && !relay_work_.empty(); ++round) {
        std::vector<Relay*> work;
        work.swap(relay_work_);
        for (Relay* r : work) {
            r->queued = false;
            if (r->dead) continue;
            relay_maybe_finish(*r);
            if (!r->dead) relay_update_interest(*r);
        }
    }
}

// The one place a session's socket is polled. Only this session's socket: its callbacks run here, and nothing
// another session does can fail this call.
void Worker::poll_session(Session& s, std::uint32_t ev) {
    if (s.closing) return;
    touch(s);
    // libssh reads at most 4 KB per poll round (MAX_BUF_SIZE): take several rounds while the socket has data,
    // instead of one round per epoll wakeup followed by a pass over the worker. Bounded, so one busy session
    // cannot starve the others of this worker.
    for (int round = 0; round < kMaxPollRoundsPerWakeup; ++round) {
        if (ssh_event_dopoll(s.conn.event(), 0) != SSH_OK || s.closing) break;
        if (ssh_get_status(s.ssh()) & (SSH_CLOSED | SSH_CLOSED_ERROR)) break;
    }
    if ((ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || (ssh_get_status(s.ssh()) & (SSH_CLOSED | SSH_CLOSED_ERROR)))
        suspects_.push_back(&s);  // the peer hung up or the session failed: close it after the round
}

void Worker::touch(Session& s) {
    if (s.touched || s.closing) return;
    s.touched = true;
    touched_.push_back(&s);
}

void Worker::update_session_interest(Session& s) {
    if (s.closing || s.conn.watch_fd() < 0) return;
    // libssh keeps what the socket did not take in its output buffer and flushes it when its poll sees POLLOUT.
    std::uint32_t want = EPOLLIN | EPOLLRDHUP;
    if (ssh_get_status(s.ssh()) & SSH_WRITE_PENDING) want |= EPOLLOUT;
    if (want == s.epoll_mask) return;
    std::string why;
    if (s.conn.set_interest(static_cast<Pollable*>(&s), want, why))
        s.epoll_mask = want;
    else
        close_session(s, "cannot watch the session socket: " + why);
}

void Worker::handle_mail() {
    std::deque<Mail> batch;
    {
        std::lock_guard lock(mail_mu_);
        batch.swap(mail_);
    }
    for (auto& m : batch) {
        switch (m.type) {
            case Mail::Type::kNewSession:
                if (stopping_) {
                    m.conn.reset();
                    ctx_.admission.release(m.client_ip);
                } else {
                    adopt_session(m);
                }
                break;
            case Mail::Type::kCancelForward:
                cancel_forward(m);
                break;
            case Mail::Type::kStop:
                stopping_ = true;
                for (auto& [id, s] : sessions_) close_session(*s, "shutdown");
                break;
        }
    }
}

void Worker::cancel_forward(const Mail& m) {
    auto it = sessions_.find(m.session_id);
    if (it == sessions_.end()) return;
    Session& s = *it->second;
    for (auto& f : s.forwards) {
        if (f->id == m.forward_id && !f->dead) remove_forward(*f, m.reason, m.detail);
    }
    if (s.live_forwards() == 0 && !s.closing) close_session(s, "all forwards taken over");
}

// Failures are logged and the session carries on: without them it only loses latency (NODELAY) or the early
// drop of a vanished peer (USER_TIMEOUT, the keepalive logic still notices).
void Worker::tune_session_socket(const Session& s) {
    const int fd = ssh_get_fd(s.ssh());
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        log_line("setsockopt TCP_NODELAY client=" + s.client + " fd " + std::to_string(fd) + ": " +
                 std::strerror(errno));
    // A peer that vanishes with unacknowledged data in flight is dropped by the kernel after this long, even
    // before the keepalive logic notices.
    unsigned user_timeout_ms = ctx_.options.keepalive_seconds * (ctx_.options.keepalive_max + 1) * 1000u;
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms) != 0)
        log_line("setsockopt TCP_USER_TIMEOUT client=" + s.client + " fd " + std::to_string(fd) + ": " +
                 std::strerror(errno));
}

bool Worker::start_key_exchange(Session& s) {
    ssh_set_blocking(s.ssh(), 0);
    ssh_set_auth_methods(s.ssh(), SSH_AUTH_METHOD_PUBLICKEY);
    ssh_set_message_callback(s.ssh(), &Worker::on_message, &s);
    ssh_set_counters(s.ssh(), &s.socket_counter, &s.packet_counter);
    if (ssh_handle_key_exchange(s.ssh()) != SSH_ERROR) return true;
    log_line("disconnect client=" + s.client + " fingerprint=- duration=0s bytes_in=0 bytes_out=0 reason=" +
             log_quote(std::string("key exchange failed: ") + ssh_get_error(s.ssh())));
    return false;
}

void Worker::adopt_session(Mail& m) {
    auto s = std::make_unique<Session>();
    s->id = next_object_id();
    s->worker = this;
    s->conn = std::move(m.conn);
    s->client = m.client;
    s->client_ip = m.client_ip;
    s->started = Clock::now();
    tune_session_socket(*s);
    // On failure the session's SshConnection frees what was made when `s` goes.
    if (!start_key_exchange(*s)) {
        ctx_.admission.release(s->client_ip);
        return;
    }
    // Its own event, never shared: see worker.hpp. The worker's epoll set watches a dup of the socket and polls
    // this event when the socket is ready.
    std::string why;
    const std::uint32_t events = EPOLLIN | EPOLLRDHUP;
    if (!s->conn.watch(epoll_fd_, static_cast<Pollable*>(s.get()), events, why)) {
        log_line("disconnect client=" + s->client + " reason=" + log_quote(why));
        ctx_.admission.release(s->client_ip);
        return;
    }
    s->epoll_mask = events;
    ctx_.counters.add(Counter::kSessions);
    sessions_.emplace(s->id, std::move(s));
    session_count_.store(sessions_.size());
}

void Worker::check_session(Session& s) {
    if (s.closing || s.dead) return;
    if (!s.refusals_due.empty()) answer_shell_refusals(s);
    int status = ssh_get_status(s.ssh());
    if (status & SSH_CLOSED_ERROR) {
        std::string err = ssh_get_error(s.ssh()) ? ssh_get_error(s.ssh()) : "";
        // libssh reports a peer's orderly TCP close as the error "Socket error: disconnected".
        if (err.find("disconnected") != std::string::npos)
            close_session(s, "client closed the connection");
        else
            close_session(s, "connection lost" + (err.empty() ? std::string() : ": " + err));
    } else if (status & SSH_CLOSED) {
        close_session(s, "client disconnected");
    }
}

void Worker::on_timer() {
    resume_listeners();
    auto now = Clock::now();
    expire_relays(now);
    bool keepalive_tick = now >= next_keepalive_;
    if (keepalive_tick) next_keepalive_ = now + std::chrono::seconds(ctx_.options.keepalive_seconds);
    for (auto& [id, sp] : sessions_) {
        Session& s = *sp;
        check_session(s);
        if (s.closing) continue;
        touch(s);  // keepalives, and any path that wrote without touching: re-evaluated every timer period
        if (!s.authenticated) {
            if (now - s.started > kLoginGraceTime) {
                ctx_.counters.add(Counter::kAuthFailures, "grace_time");
                close_session(s, "login grace time exceeded");
            }
            continue;
        }
        if (keepalive_tick) keepalive(s);
    }
}

void Worker::keepalive(Session& s) {
    // Liveness from the packet counter: any packet from the client (data, window adjust, keepalive reply)
    // proves it alive; ssh_send_keepalive's own result means nothing.
    if (s.packet_counter.in_packets != s.last_in_packets) {
        s.last_in_packets = s.packet_counter.in_packets;
        s.missed_keepalives = 0;
        return;
    }
    if (++s.missed_keepalives > ctx_.options.keepalive_max) {
        ctx_.counters.add(Counter::kKeepaliveDrops);
        close_session(s, "no answer to " + std::to_string(ctx_.options.keepalive_max) + " keepalives");
        return;
    }
    // In non-blocking mode every second call sends (the other collects the pending reply): call twice.
    ssh_send_keepalive(s.ssh());
    ssh_send_keepalive(s.ssh());
}

void Worker::close_session(Session& s, const std::string& reason) {
    if (s.closing) return;
    s.closing = true;
    s.close_reason = reason;
    garbage_ = true;
}

void Worker::teardown_session(Session& s) {
    for (auto& r : s.relays) {
        if (r->fd >= 0) {
            close_fd(r->fd, "relay socket");
            r->fd = -1;
        }
        if (r->channel) ssh_remove_channel_callbacks(r->channel, &r->callbacks);
        r->channel = nullptr;  // ssh_free releases the channels
        r->dead = true;
    }
    for (auto& f : s.forwards) {
        if (!f->dead) remove_forward(*f, stopping_ ? "shutdown" : "session end");
    }
    s.conn.disconnect();
    auto secs = std::chrono::duration<double>(Clock::now() - s.started).count();
    char duration[32];
    std::snprintf(duration, sizeof duration, "%.3fs", secs);
    log_line("disconnect client=" + s.client + " fingerprint=" + s.fingerprint + " duration=" + duration +
             " bytes_in=" + std::to_string(s.socket_counter.in_bytes) + " bytes_out=" +
             std::to_string(s.socket_counter.out_bytes) + " relayed_up=" + std::to_string(s.relay_bytes_up) +
             " relayed_down=" + std::to_string(s.relay_bytes_down) + " reason=" + log_quote(s.close_reason));
    s.conn.reset();  // ssh_free releases the relays' channels
    if (!s.authenticated) ctx_.admission.release(s.client_ip);
    s.dead = true;
}

void Worker::collect_garbage() {
    if (!garbage_) return;
    garbage_ = false;
    // 1. Finalise dead relays (close the socket, free the channel). ssh_channel_free may poll, so callbacks can
    //    mark more relays dead meanwhile; those are finalised next time (relay_close sets garbage_ again).
    std::vector<std::uint64_t> closing;
    for (auto& [id, sp] : sessions_) {
        Session& s = *sp;
        if (s.closing) {
            for (auto& r : s.relays) r->dead = true;
            closing.push_back(id);
            continue;
        }
        for (std::size_t i = 0; i < s.relays.size(); ++i) {
            if (s.relays[i]->dead) relay_release(*s.relays[i]);
        }
    }
    // 2. No libssh call from here on: drop every dead object from the work lists, then free.
    auto dead_relay = [](Relay* r) { return r->dead; };
    std::erase_if(opening_, dead_relay);
    // Leaving a list clears its flag, so flag and membership agree for dead relays too.
    for (Relay* r : window_blocked_)
        if (r->dead) r->window_closed = false;
    std::erase_if(window_blocked_, dead_relay);
    for (Relay* r : relay_work_)
        if (r->dead) r->queued = false;
    std::erase_if(relay_work_, dead_relay);
    std::erase_if(suspects_, [](Session* s) { return s->closing; });
    std::erase_if(touched_, [](Session* s) { return s->closing; });
    for (auto& [id, sp] : sessions_) {
        Session& s = *sp;
        if (s.closing) continue;
        std::erase_if(s.relays, [](const auto& r) { return r->dead && r->fd < 0 && r->channel == nullptr; });
        std::erase_if(s.forwards, [](const auto& f) { return f->dead; });
    }
    // 3. Sessions last: teardown frees their relays and channels together. Only those seen closing in step 1:
    //    a session closed by a callback during teardown may still sit in the work lists until next round.
    for (auto id : closing) {
        auto it = sessions_.find(id);
        teardown_session(*it->second);
        sessions_.erase(it);
    }
    session_count_.store(sessions_.size());
}

}  // namespace tunneld
