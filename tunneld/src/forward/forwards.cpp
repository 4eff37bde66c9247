// tcpip-forward and cancel-tcpip-forward. One function handles a forward request in the order the design asks
// for: validate, check permission, bind the forward's own loopback address, record in the registry, reply.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "log.hpp"
#include "monitoring_proxy/address.hpp"
#include "forward/wire_port.hpp"
#include "forward/forward_reservation.hpp"
#include "session/worker.hpp"

namespace tunneld {

using Counter = monitoring_proxy::registry::TunneldCounter;

using monitoring_proxy::endpoint_text;
using monitoring_proxy::ipv4_text;

namespace {

constexpr std::size_t kMaxForwardsPerSession = 16;
constexpr int kListenBacklog = 128;

// Binds and listens on address:port (host byte order). `share` sets SO_REUSEPORT, for the 127.0.0.1 listener of
// a fixed port only: a takeover binds it while the old session's listener is still open in another worker (it
// is closed right after). A forward's own address is never shared.
int bind_listener(std::uint32_t address, std::uint16_t port, bool share) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(address);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (share && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, kListenBacklog) != 0) {
        const int err = errno;
        close_fd(fd, "tunnel listener");
        errno = err;
        return -1;
    }
    return fd;
}

// The request's port as sent (see wire_port.hpp): libssh alone would turn 83848 into 18312. nullopt when it
// cannot be read whole; the caller refuses then, since the 16 bits libssh kept may name another port.
std::optional<std::uint32_t> requested_port(ssh_message msg) {
    const auto low16 = static_cast<std::uint16_t>(ssh_message_global_request_port(msg));
    const char* address = ssh_message_global_request_address(msg);
    return port_after_pointer(msg, malloc_usable_size(msg), address, low16);
}

// Why a request's port cannot be used, or "" when it can.
std::string invalid_port(const std::optional<std::uint32_t>& port) {
    if (!port) return "the request's port could not be read whole";
    if (*port > 65535) return "port " + std::to_string(*port) + " > 65535";
    return "";
}

std::string requested_text(const std::string& address, std::uint32_t port) {
    return log_quote(address.empty() ? "*" : address) + ":" + std::to_string(port);
}

// "forward refused ..." / "cancel refused ...": one format for both requests' counted refusals.
std::string refusal_line(const char* request, const Session& s, const std::string& address, std::uint32_t port,
                         const std::string& reason, const std::string& why) {
    return std::string(request) + " refused client=" + s.client + " fingerprint=" + s.fingerprint +
           " requested=" + requested_text(address, port) + " reason=" + reason + " detail=" + log_quote(why);
}

}  // namespace

int Worker::refuse_forward(Session& s, const ForwardRequest& request, const std::string& reason,
                           const std::string& why) {
    ctx_.counters.add(Counter::kForwardsRefused, reason);
    log_line(refusal_line("forward", s, request.bind_address, request.bind_port, reason, why));
    return 1;  // SSH_MSG_REQUEST_FAILURE: "remote port forwarding failed for listen port ..."
}

// Permission, against the registry as it is now (targets may have been bound since authentication). Also
// returns every declared fixed port: those are never handed to another target.
ForwardDecision Worker::decide(Session& s, const ForwardRequest& request,
                               std::map<std::uint16_t, std::string>& fixed_ports) {
    KeyGrant grant = s.grant;
    const PolicyConfig config{ctx_.options.port_range, ctx_.options.allow_undeclared};
    ForwardDecision decision = ctx_.registry.with([&](auto& reg) {
        grant.bound_targets = reg.targets_for_key(grant.fingerprint);
        fixed_ports = reg.fixed_ports();
        TargetLookup lookup = [&](std::string_view name) { return reg.get_target(name); };
        FixedPortLookup by_port = [&](std::uint16_t port) -> std::optional<std::string> {
            auto it = fixed_ports.find(port);
            return it == fixed_ports.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        return decide_forward(request, grant, config, lookup, by_port);
    });
    if (!decision.allowed && decision.takeover_attempt) {
        ctx_.counters.add(Counter::kTakeoverAttempts);
        log_line("takeover attempt client=" + s.client + " fingerprint=" + s.fingerprint +
                 " requested=" + requested_text(request.bind_address, request.bind_port) +
                 " detail=" + log_quote(decision.message));
    }
    for (const auto& f : s.forwards) {
        if (decision.allowed && !f->dead && f->target == decision.target) {
            decision.allowed = false;
            decision.reason = "duplicate";
            decision.message = "this session already forwards target \"" + decision.target + "\"";
        }
    }
    return decision;
}

// One place, in the design's order: validate, check permission, bind, record, reply.
int Worker::handle_tcpip_forward(Session& s, ssh_message msg) {
    const char* addr_c = ssh_message_global_request_address(msg);
    const auto port = requested_port(msg);
    const ForwardRequest request{addr_c ? addr_c : "", port.value_or(0)};

    // 1. Validate.
    if (request.bind_address.size() > 255) return refuse_forward(s, request, "invalid", "bind address longer than 255 bytes");
    if (const std::string bad = invalid_port(port); !bad.empty()) return refuse_forward(s, request, "invalid", bad);
    if (s.live_forwards() >= kMaxForwardsPerSession)
        return refuse_forward(s, request, "too_many",
                              "at most " + std::to_string(kMaxForwardsPerSession) + " forwards per session");

    // 2. Permission.
    std::map<std::uint16_t, std::string> fixed_ports;
    ForwardDecision decision;
    try {
        decision = decide(s, request, fixed_ports);
    } catch (const std::exception& e) {
        return refuse_forward(s, request, "registry_error", e.what());
    }
    if (!decision.allowed) return refuse_forward(s, request, decision.reason, decision.message);

    // 3 + 4. Reserve, bind, watch, record; anything that fails is given back by the reservation.
    auto forward = std::make_unique<Forward>();
    forward->id = next_object_id();
    forward->session = &s;
    forward->target = decision.target;
    forward->requested_address = request.bind_address;
    forward->requested_port = request.bind_port;
    ForwardReservation reservation(
        ctx_.tunnels, {decision.target, forward->id, decision.fixed_port, s.client, s.fingerprint, decision.self_register});
    const bool ok = reservation.bind(fixed_ports, &bind_listener) &&
                    reservation.watch([&](int fd, std::string& why) { return watch_listener(*forward, fd, why); }) &&
                    reservation.record(ctx_.registry, ctx_.instance_id, unix_now_ms(),
                                       TunnelOwner{this, s.id, forward->id, reservation.claim().address,
                                                   reservation.claim().port, s.client});
    if (!ok) return refuse_forward(s, request, reservation.refusal(), reservation.failure());
    reservation.take_listeners(forward->listen_fd, forward->fixed_fd);
    forward->address = reservation.claim().address;
    forward->port = reservation.claim().port;
    forward->channel_port = request.bind_port != 0 ? request.bind_port : forward->port;

    // 5. Reply (with the port when the client asked for port 0: it prints "Allocated port ...").
    ssh_message_global_request_reply_success(msg, forward->port);
    announce_forward(s, request, decision, *forward, reservation.previous());
    s.forwards.push_back(std::move(forward));
    return 0;
}

void Worker::announce_forward(Session& s, const ForwardRequest& request, const ForwardDecision& decision,
                              const Forward& forward, const std::optional<TunnelOwner>& previous) {
    if (decision.self_register) {
        log_line("target self-registered target=" + decision.target + " fingerprint=" + s.fingerprint +
                 " client=" + s.client);
    }
    log_line("forward added client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + decision.target +
             " port=" + std::to_string(forward.port) + " address=" + ipv4_text(forward.address) +
             " requested=" + requested_text(request.bind_address, request.bind_port));
    ctx_.counters.add(Counter::kForwards);
    if (ctx_.cluster)
        ctx_.cluster->publish(decision.target, {{}, {}, unix_now_ms(), s.fingerprint, s.client, forward.id});
    if (!previous) return;
    // Newest session wins: the old forward goes at once, its session too if nothing else remains.
    ctx_.counters.add(Counter::kTakeovers, decision.target);
    log_line("takeover client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + decision.target +
             " port=" + std::to_string(forward.port) + " previous_client=" + previous->client);
    Mail cancel{Mail::Type::kCancelForward};
    cancel.session_id = previous->session_id;
    cancel.forward_id = previous->forward_id;
    cancel.reason = "takeover";
    previous->worker->post(std::move(cancel));
}

// Watched before the forward is recorded: a recorded listener nothing accepts on would only ever time out.
bool Worker::watch_listener(Forward& f, int fd, std::string& failure) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = static_cast<Pollable*>(&f);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0) return true;
    failure = std::string("cannot watch the listener: ") + std::strerror(errno);
    return false;
}

// Closing a descriptor also takes it out of the epoll set.
void Worker::close_listeners(Forward& f) {
    for (int* fd : {&f.listen_fd, &f.fixed_fd}) {
        if (*fd < 0) continue;
        close_fd(*fd, "tunnel listener");
        *fd = -1;
    }
}

int Worker::handle_cancel_forward(Session& s, ssh_message msg) {
    const char* addr_c = ssh_message_global_request_address(msg);
    std::string address = addr_c ? addr_c : "";
    const auto wire_port = requested_port(msg);
    if (const std::string bad = invalid_port(wire_port); !bad.empty()) {
        ctx_.counters.add(Counter::kForwardsRefused, "invalid");
        log_line(refusal_line("cancel", s, address, wire_port.value_or(0), "invalid", bad));
        return 1;
    }
    const std::uint32_t port = *wire_port;
    for (auto& f : s.forwards) {
        if (f->dead || f->requested_address != address) continue;
        if (f->requested_port == port || f->port == port) {
            remove_forward(*f, "cancel");
            ssh_message_global_request_reply_success(msg, 0);
            return 0;
        }
    }
    log_line("cancel refused client=" + s.client + " fingerprint=" + s.fingerprint +
             " requested=" + requested_text(address, port) + " reason=\"no such forward in this session\"");
    return 1;
}

// The registry entry goes first, so from then on the module answers 503 for the name; then the listeners, so no
// new connection reaches this forward; then every connection it accepted, so nothing already relayed (an idle
// keepalive connection in nginx's cache included) can carry this forward's host's data any more.
void Worker::remove_forward(Forward& f, const std::string& why, const std::string& detail) {
    if (f.dead) return;
    f.dead = true;
    garbage_ = true;
    bool owned = false;
    try {
        // Under the registry's mutex, as record() installs: table and registry always name the same forward.
        // After a takeover the table names the new forward: the registry entry is the new session's.
        ctx_.registry.with([&](auto& reg) {
            owned = ctx_.tunnels.remove_if_owner(f.target, f.id);
            if (owned)
                reg.update_live([&](monitoring_proxy::registry::LiveTxn& txn) {
                    txn.remove_tunnel(f.target, ctx_.instance_id);
                });
            if (owned && ctx_.cluster) ctx_.cluster->withdraw(f.target, f.id);
            return 0;
        });
    } catch (const std::exception& e) {
        log_line("registry error while removing tunnel " + f.target + ": " + e.what());
    }
    close_listeners(f);
    Session& s = *f.session;
    std::size_t open_relays = 0;
    for (auto& r : s.relays) {
        if (r->forward_id != f.id || r->dead) continue;
        relay_close(*r, RelayEnd::kForwardEnded, "forward ended (" + why + ")");
        ++open_relays;
    }
    log_line("forward removed client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + f.target +
             " port=" + std::to_string(f.port) + " reason=" + log_quote(why) + detail +
             " connections=" + std::to_string(f.connects) + " closed_relays=" + std::to_string(open_relays) +
             (owned ? "" : " registry=kept(newer session)"));
}

void Worker::accept_connections(Forward& f) {
    accept_on(f, f.listen_fd);
    accept_on(f, f.fixed_fd);
}

void Worker::accept_on(Forward& f, int listen_fd) {
    for (int i = 0; i < 64 && !f.dead && listen_fd >= 0; ++i) {
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                pause_accepting(f, errno);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
                log_line("accept error target=" + f.target + " port=" + std::to_string(f.port) + ": " +
                         std::strerror(errno));
            }
            return;
        }
        if (f.accept_paused) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - f.paused_since).count();
            log_line("accept resumed target=" + f.target + " port=" + std::to_string(f.port) +
                     " paused_ms=" + std::to_string(ms));
            f.accept_paused = false;
        }
        char host[INET6_ADDRSTRLEN] = "127.0.0.1";
        std::uint16_t peer_port = 0;
        if (peer.ss_family == AF_INET) {
            auto* in = reinterpret_cast<sockaddr_in*>(&peer);
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            peer_port = ntohs(in->sin_port);
        }
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)  // only latency is lost: go on
            log_line("setsockopt TCP_NODELAY target=" + f.target + " fd " + std::to_string(fd) + ": " +
                     std::strerror(errno));
        ++f.connects;
        ctx_.counters.add(Counter::kConnects, f.target);
        start_relay(f, fd, host, peer_port);
    }
}

// Out of descriptors: the pending connection stays readable and would make epoll spin. Stop listening for events
// until the next timer tick (resume_listeners). One line when an episode starts and one when an accept works
// again, however many ticks it takes.
void Worker::pause_accepting(Forward& f, int err) {
    if (!f.accept_paused) {
        f.accept_paused = true;
        f.paused_since = Clock::now();
        log_line("accept paused target=" + f.target + " port=" + std::to_string(f.port) + " reason=" +
                 log_quote(std::strerror(err)) + " retry_ms=" + std::to_string(kWorkerTimerPeriod.count()));
    }
    set_listener_interest(f, 0);
    paused_listeners_.push_back(f.id);
}

void Worker::set_listener_interest(Forward& f, std::uint32_t events) {
    for (int fd : {f.listen_fd, f.fixed_fd}) {
        if (fd < 0) continue;
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = static_cast<Pollable*>(&f);
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0)
            log_line("listener error target=" + f.target + " fd " + std::to_string(fd) + ": epoll_ctl MOD: " +
                     std::strerror(errno));
    }
}

void Worker::resume_listeners() {
    if (paused_listeners_.empty()) return;
    std::vector<std::uint64_t> ids;
    ids.swap(paused_listeners_);
    for (auto& [sid, s] : sessions_) {
        for (auto& f : s->forwards) {
            if (f->dead || std::find(ids.begin(), ids.end(), f->id) == ids.end()) continue;
            set_listener_interest(*f, EPOLLIN);
        }
    }
}

}  // namespace tunneld
