// Relaying one TCP connection accepted on a tunnel port through a forwarded-tcpip channel, both ways, with flow
// control: TCP is read only while the client's window is open, and channel data the socket cannot take stays
// in libssh's buffer (its window then stops growing) until EPOLLOUT.
//
// Lifetime: a relay holds a descriptor, so none may outlive its use. It ends when the scraper hangs up before the
// client accepted the channel, when the client does not answer the open within kChannelOpenTimeout, and when the
// client stays silent for kClientAnswerTimeout after the scraper closed (nginx gave up). A session holds at most
// kMaxRelaysPerSession; connections beyond that are closed at once, other sessions are not affected.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "log.hpp"
#include "session/worker.hpp"

namespace tunneld {

using Counter = monitoring_proxy::registry::TunneldCounter;

namespace {
constexpr int kMaxReadsPerEvent = 8;  // fairness between relays of one worker
// Prometheus's default scrape_timeout is 10 s: a channel not open by then serves nobody. OpenSSH answers the open
// right after its local connect to the exporter, which takes milliseconds when the exporter is up.
constexpr auto kChannelOpenTimeout = std::chrono::seconds(10);
// After the scraper's EOF (nginx and Prometheus close, they never half-close) the client gets as long again to send
// anything (its exporter's answer, its EOF/close); a silent client would otherwise hold the relay forever.
constexpr auto kClientAnswerTimeout = std::chrono::seconds(10);
// Concurrent relays per session: a target is scraped by one or two Prometheus servers a few times a minute, so
// this leaves room for 16 forwards with several scrapes each, and caps a host that never ends its channels at
// 64 descriptors (plus its socket, the socket's watch dup and up to 32 listeners).
constexpr std::size_t kMaxRelaysPerSession = 64;
}  // namespace

void Worker::queue_relay(Relay& r) {
    if (r.session != nullptr) touch(*r.session);  // relay work writes to the session (data, EOF, close)
    if (r.queued || r.dead) return;
    r.queued = true;
    relay_work_.push_back(&r);
}

bool Worker::relay_admitted(Forward& f, int fd, const std::string& peer_host, std::uint16_t peer_port) {
    Session& s = *f.session;
    auto live = std::count_if(s.relays.begin(), s.relays.end(), [](const auto& r) { return !r->dead; });
    if (static_cast<std::size_t>(live) < kMaxRelaysPerSession) return true;
    close_fd(fd, "relay socket");
    ctx_.counters.add(Counter::kRelaysRefused, "session_cap");
    log_line("relay refused client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + f.target +
             " peer=" + peer_host + ":" + std::to_string(peer_port) + " reason=session_cap detail=" +
             log_quote(std::to_string(kMaxRelaysPerSession) + " relays already open in this session"));
    return false;
}

void Worker::start_relay(Forward& f, int fd, const std::string& peer_host, std::uint16_t peer_port) {
    if (!relay_admitted(f, fd, peer_host, peer_port)) return;
    Session& s = *f.session;
    auto relay = std::make_unique<Relay>();
    Relay& r = *relay;
    r.session = &s;
    r.forward_id = f.id;
    r.target = f.target;
    r.fd = fd;
    r.peer_host = peer_host;
    r.peer_port = peer_port;
    r.open_address = f.requested_address;
    r.open_port = f.channel_port;
    r.accepted = r.client_active = Clock::now();
    r.channel = ssh_channel_new(s.ssh());
    if (r.channel == nullptr) {
        close_fd(fd, "relay socket");
        log_line("relay error client=" + s.client + " target=" + f.target + " reason=\"cannot create channel\"");
        return;
    }
    ssh_callbacks_init(&r.callbacks);
    r.callbacks.userdata = &r;
    r.callbacks.channel_data_function = &Worker::on_channel_data;
    r.callbacks.channel_eof_function = &Worker::on_channel_eof;
    r.callbacks.channel_close_function = &Worker::on_channel_close;
    ssh_set_channel_callbacks(r.channel, &r.callbacks);
    s.relays.push_back(std::move(relay));

    epoll_event ev{};
    ev.events = EPOLLRDHUP;  // nothing to read until the client accepts the channel, but a hang-up ends it
    ev.data.ptr = static_cast<Pollable*>(&r);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        // Unwatched, nothing would ever read it or notice its end: end it now (freed between rounds).
        relay_close(r, RelayEnd::kFailed,
                    "cannot watch the relay socket (fd " + std::to_string(fd) + "): " + std::strerror(errno));
        return;
    }
    r.epoll_mask = ev.events;
    open_channel(r);
}

// The one place a relay's channel is opened: first from start_relay, then after every poll round from
// progress_opening while the client has not answered (non-blocking: SSH_AGAIN until it does).
void Worker::open_channel(Relay& r) {
    int rc = ssh_channel_open_reverse_forward(r.channel, r.open_address.c_str(), static_cast<int>(r.open_port),
                                              r.peer_host.c_str(), r.peer_port);
    touch(*r.session);  // the CHANNEL_OPEN may still sit in libssh's output buffer
    if (rc == SSH_AGAIN) {
        opening_.push_back(&r);
    } else if (rc == SSH_OK) {
        channel_opened(r);
    } else {
        // The client refused: its local connect to the exporter failed, or the forward is gone there. Even the
        // first call may already have read that answer, so both calls name it the same way.
        relay_close(r, RelayEnd::kFailed,
                    std::string("client refused the channel: ") + ssh_get_error(r.session->ssh()));
    }
}

// The client accepted the channel. libssh opened it with a 64,000-byte receive window and grows it only after the
// first data packet, so a response larger than that waits a round trip for the adjust. A read asking for more than
// buffered + window makes libssh send the adjust (to 1.28 MB) now, before the request even reaches the exporter
// (libssh 0.10 channels.c, ssh_channel_read_timeout: the count > buffered + local_window branch).
void Worker::channel_opened(Relay& r) {
    r.state.channel_opened();
    static_assert(kScratchBytes > 64000, "the read must ask for more than libssh's initial channel window");
    int n = ssh_channel_read_timeout(r.channel, scratch_.data(), static_cast<std::uint32_t>(scratch_.size()), 0, 0);
    if (n == SSH_ERROR) {
        relay_close(r, RelayEnd::kFailed, std::string("channel read failed: ") + ssh_get_error(r.session->ssh()));
        return;
    }
    // That read also polled: data the callback could not hand to the scraper came back here. Keep its order.
    if (n > 0) r.to_tcp.append(scratch_.data(), static_cast<std::size_t>(n));
    queue_relay(r);
}

void Worker::progress_opening() {
    if (opening_.empty()) return;
    std::vector<Relay*> pending;
    pending.swap(opening_);
    for (Relay* r : pending) {
        if (r->dead || !r->state.opening()) continue;
        if (r->session->closing) {
            relay_close(*r, RelayEnd::kAbandoned, "session closing");
            continue;
        }
        open_channel(*r);
    }
}

void Worker::relay_scraper_hup(Relay& r) {
    if (r.state.opening()) {
        ctx_.counters.add(Counter::kRelaysAbandoned, "scraper_gone");
        relay_close(r, RelayEnd::kAbandoned, "scraper closed before the client accepted the channel");
        return;
    }
    // Level-triggered: EPOLLRDHUP stays set, so it leaves the interest mask now (relay_update_interest, from
    // scraper_gone); unread data and the EOF are still read through EPOLLIN.
    if (!r.scraper_gone) r.scraper_gone = Clock::now();
    queue_relay(r);
}

void Worker::expire_relays(Clock::time_point now) {
    for (auto& [id, sp] : sessions_) {
        if (sp->closing) continue;
        for (auto& rp : sp->relays) {
            Relay& r = *rp;
            if (r.dead) continue;
            if (r.state.opening() && now - r.accepted >= kChannelOpenTimeout) {
                ctx_.counters.add(Counter::kRelaysAbandoned, "open_timeout");
                relay_close(r, RelayEnd::kAbandoned,
                            "client did not answer the channel open within " +
                                std::to_string(kChannelOpenTimeout.count()) + " s");
            } else if (r.scraper_gone && now - std::max(*r.scraper_gone, r.client_active) >= kClientAnswerTimeout) {
                ctx_.counters.add(Counter::kRelaysAbandoned, "client_silent");
                relay_close(r, RelayEnd::kAbandoned,
                            "client sent nothing for " + std::to_string(kClientAnswerTimeout.count()) +
                                " s after the scraper closed");
            }
        }
    }
}

void Worker::recheck_windows() {
    // A window that reopens produces no callback: look after every poll round.
    if (window_blocked_.empty()) return;
    std::vector<Relay*> blocked;
    blocked.swap(window_blocked_);
    for (Relay* r : blocked) {
        r->window_closed = false;  // out of the list: back in through wait_for_window if the window is still shut
        if (r->dead) continue;
        std::uint32_t window = ssh_channel_window_size(r->channel);
        if (window > 0 && !r->to_ssh.empty()) {
            std::size_t n = std::min<std::size_t>(window, r->to_ssh.size());
            int w = ssh_channel_write(r->channel, r->to_ssh.data(), static_cast<std::uint32_t>(n));
            if (w == SSH_ERROR) {
                relay_close(*r, RelayEnd::kFailed, "channel write failed");
                continue;
            }
            r->to_ssh.erase(0, static_cast<std::size_t>(w));
            window = ssh_channel_window_size(r->channel);
        }
        if (r->to_ssh.empty() && window > 0)
            queue_relay(*r);
        else
            wait_for_window(*r);
    }
}

// The only place a relay enters window_blocked_; it leaves it in recheck_windows or, dead, in collect_garbage,
// both clearing the flag: window_closed and membership cannot disagree.
void Worker::wait_for_window(Relay& r) {
    assert(!r.window_closed);
    r.window_closed = true;
    window_blocked_.push_back(&r);
}

// The socket's EOF. Passed on to the client at once: the socket is read only while nothing waits for the window
// (to_ssh is empty), so no scraper data can be behind it.
void Worker::relay_scraper_eof(Relay& r) {
    if (!r.scraper_gone) r.scraper_gone = Clock::now();
    if (r.state.scraper_eof()) ssh_channel_send_eof(r.channel);
}

void Worker::relay_readable(Relay& r) {
    if (!r.state.reads_socket() || r.window_closed) return;
    for (int i = 0; i < kMaxReadsPerEvent; ++i) {
        std::uint32_t window = ssh_channel_window_size(r.channel);
        if (window == 0) {
            wait_for_window(r);
            return;
        }
        std::size_t want = std::min<std::size_t>(window, scratch_.size());
        ssize_t n = recv(r.fd, scratch_.data(), want, 0);
        if (n > 0) {
            r.bytes_up += static_cast<std::uint64_t>(n);
            int w = ssh_channel_write(r.channel, scratch_.data(), static_cast<std::uint32_t>(n));
            if (w == SSH_ERROR) {
                relay_close(r, RelayEnd::kFailed, "channel write failed");
                return;
            }
            if (w < n) {
                r.to_ssh.assign(scratch_.data() + w, static_cast<std::size_t>(n - w));
                wait_for_window(r);
                return;
            }
            if (static_cast<std::size_t>(n) < want) return;  // socket drained
            continue;
        }
        if (n == 0) {
            relay_scraper_eof(r);
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        relay_close(r, RelayEnd::kFailed, std::string("socket error: ") + std::strerror(errno));
        return;
    }
}

void Worker::relay_writable(Relay& r) {
    for (int i = 0; i < 64; ++i) {
        if (!r.to_tcp.empty()) {
            ssize_t n = send(r.fd, r.to_tcp.data(), r.to_tcp.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
                relay_close(r, RelayEnd::kFailed, std::string("socket error: ") + std::strerror(errno));
                return;
            }
            r.bytes_down += static_cast<std::uint64_t>(n);
            r.to_tcp.erase(0, static_cast<std::size_t>(n));
            if (!r.to_tcp.empty()) return;
            continue;
        }
        // The data callback left bytes in the channel buffer: they only come back with the next packet unless
        // read here.
        int n =
            ssh_channel_read_nonblocking(r.channel, scratch_.data(), static_cast<std::uint32_t>(scratch_.size()), 0);
        if (n == SSH_ERROR) {
            if (r.state.client_ended()) {
                r.socket_full = false;
                return;
            }
            relay_close(r, RelayEnd::kFailed, "channel read failed");
            return;
        }
        if (n <= 0) {  // 0 or SSH_EOF: the buffer is empty
            r.socket_full = false;
            return;
        }
        r.client_active = Clock::now();
        ssize_t sent = send(r.fd, scratch_.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                relay_close(r, RelayEnd::kFailed, std::string("socket error: ") + std::strerror(errno));
                return;
            }
            sent = 0;
        }
        r.bytes_down += static_cast<std::uint64_t>(sent);
        if (sent < n) {
            r.to_tcp.assign(scratch_.data() + sent, static_cast<std::size_t>(n - sent));
            return;
        }
    }
}

void Worker::relay_update_interest(Relay& r) {
    std::uint32_t want = 0;
    if (r.state.reads_socket() && !r.window_closed && r.to_ssh.empty()) want |= EPOLLIN;
    if (r.socket_full || !r.to_tcp.empty()) want |= EPOLLOUT;
    // A scraper hanging up is noticed in every phase until its FIN or EOF was seen (level-triggered: it stays).
    if (!r.scraper_gone) want |= EPOLLRDHUP;
    if (want == r.epoll_mask) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.ptr = static_cast<Pollable*>(&r);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, r.fd, &ev) != 0) {
        relay_close(r, RelayEnd::kFailed,
                    "epoll_ctl MOD relay fd " + std::to_string(r.fd) + ": " + std::strerror(errno));
        return;
    }
    r.epoll_mask = want;
}

// Carries out the steps the relay's state asks for until it has to wait (relay_state.hpp).
void Worker::relay_maybe_finish(Relay& r) {
    while (true) {
        switch (r.state.next_step(r.socket_full || !r.to_tcp.empty())) {
            case RelayStep::kNone:
                return;
            case RelayStep::kShutdownSocket:
                // ENOTCONN: the scraper reset meanwhile, and its HUP/ERR ends the relay.
                if (shutdown(r.fd, SHUT_WR) != 0 && errno != ENOTCONN)
                    log_line("shutdown relay fd " + std::to_string(r.fd) + ": " + std::strerror(errno));
                r.state.socket_shut_down();
                break;
            case RelayStep::kCloseByClient:
                relay_close(r, RelayEnd::kClosedByClient, "closed by client");
                return;
            case RelayStep::kCloseDone:
                relay_close(r, RelayEnd::kDone, "done");
                return;
        }
    }
}

void Worker::relay_close(Relay& r, RelayEnd end, std::string detail) {
    if (r.dead || !r.state.close(end, std::move(detail))) return;
    r.dead = true;
    garbage_ = true;
}

void Worker::relay_release(Relay& r) {
    if (r.fd < 0 && r.channel == nullptr) return;  // released in an earlier round
    Session& s = *r.session;
    touch(s);  // freeing the channel queues its CHANNEL_CLOSE
    s.relay_bytes_up += r.bytes_up;
    s.relay_bytes_down += r.bytes_down;
    r.bytes_up = r.bytes_down = 0;
    // Expected ends are not logged one by one; a forward that ends logs how many relays it closed.
    const RelayCloseReason& why = r.state.close_reason();
    if (r.state.closed() && relay_end_logged(why.end)) {
        log_line("relay closed client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + r.target +
                 " peer=" + r.peer_host + ":" + std::to_string(r.peer_port) + " reason=" + log_quote(why.detail));
    }
    if (r.fd >= 0) {
        close_fd(r.fd, "relay socket");  // also leaves the epoll set
        r.fd = -1;
    }
    if (r.channel != nullptr) {
        ssh_channel ch = r.channel;
        r.channel = nullptr;
        ssh_remove_channel_callbacks(ch, &r.callbacks);
        ssh_channel_free(ch);  // sends CHANNEL_CLOSE if still open
    }
}

int Worker::on_channel_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                            void* userdata) noexcept {
    auto& r = *static_cast<Relay*>(userdata);
    if (r.dead || r.fd < 0 || is_stderr) return static_cast<int>(len);  // nobody to deliver to: discard
    r.client_active = Clock::now();
    if (r.socket_full || !r.to_tcp.empty()) return 0;  // keep order: drain first
    ssize_t n = send(r.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            r.session->worker->relay_close(r, RelayEnd::kFailed, std::string("socket error: ") + std::strerror(errno));
            return static_cast<int>(len);
        }
        n = 0;
    }
    r.bytes_down += static_cast<std::uint64_t>(n);
    if (static_cast<std::uint32_t>(n) < len) {
        r.socket_full = true;
        r.session->worker->queue_relay(r);
    }
    return static_cast<int>(n);
}

void Worker::on_channel_eof(ssh_session, ssh_channel, void* userdata) noexcept {
    auto& r = *static_cast<Relay*>(userdata);
    r.state.client_eof();
    r.client_active = Clock::now();
    r.session->worker->queue_relay(r);
}

void Worker::on_channel_close(ssh_session, ssh_channel, void* userdata) noexcept {
    auto& r = *static_cast<Relay*>(userdata);
    r.state.client_close();
    r.session->worker->queue_relay(r);
}

}  // namespace tunneld
