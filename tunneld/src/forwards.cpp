// tcpip-forward and cancel-tcpip-forward. One function handles a forward request in the order the design asks
// for: validate, check permission, bind 127.0.0.1, record in the registry, reply.
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

#include "log.hpp"
#include "monitoring_proxy/address.hpp"
#include "wire_port.hpp"
#include "worker.hpp"

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
int bind_listener(std::uint32_t address, std::uint16_t port, bool share, int& err) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (share && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)) {
        err = errno;
        close(fd);
        return -1;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(address);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, kListenBacklog) != 0) {
        err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

// The request's port as sent (see wire_port.hpp): libssh alone would turn 83848 into 18312.
std::uint32_t requested_port(ssh_message msg) {
    const auto low16 = static_cast<std::uint16_t>(ssh_message_global_request_port(msg));
    const char* address = ssh_message_global_request_address(msg);
    auto wire = port_after_pointer(msg, malloc_usable_size(msg), address, low16);
    return wire ? *wire : low16;
}

std::string requested_text(const std::string& address, std::uint32_t port) {
    return log_quote(address.empty() ? "*" : address) + ":" + std::to_string(port);
}

}  // namespace

int Worker::handle_tcpip_forward(Session& s, ssh_message msg) {
    using monitoring_proxy::registry::DeclaredTxn;
    using monitoring_proxy::registry::LiveTxn;
    using monitoring_proxy::registry::Origin;
    using monitoring_proxy::registry::TargetRecord;
    using monitoring_proxy::registry::TunnelRecord;

    const char* addr_c = ssh_message_global_request_address(msg);
    ForwardRequest request{addr_c ? addr_c : "", requested_port(msg)};
    auto refuse = [&](const std::string& reason, const std::string& why) {
        ctx_.counters.add(Counter::kForwardsRefused, reason);
        log_line("forward refused client=" + s.client + " fingerprint=" + s.fingerprint +
                 " requested=" + requested_text(request.bind_address, request.bind_port) + " reason=" + reason +
                 " detail=" + log_quote(why));
        return 1;  // SSH_MSG_REQUEST_FAILURE: "remote port forwarding failed for listen port ..."
    };

    // 1. Validate.
    if (request.bind_address.size() > 255) return refuse("invalid", "bind address longer than 255 bytes");
    if (request.bind_port > 65535) return refuse("invalid", "port " + std::to_string(request.bind_port) + " > 65535");
    if (s.live_forwards() >= kMaxForwardsPerSession) {
        return refuse("too_many", "at most " + std::to_string(kMaxForwardsPerSession) + " forwards per session");
    }

    // 2. Permission, against the registry as it is now (targets may have been bound since authentication).
    KeyGrant grant = s.grant;
    PolicyConfig config{ctx_.options.port_range, ctx_.options.allow_undeclared};
    ForwardDecision decision;
    std::map<std::uint16_t, std::string> fixed_ports;  // never handed to another target
    try {
        decision = ctx_.registry.with([&](auto& reg) {
            grant.bound_targets = reg.targets_for_key(grant.fingerprint);
            fixed_ports = reg.fixed_ports();
            TargetLookup lookup = [&](std::string_view name) { return reg.get_target(name); };
            FixedPortLookup by_port = [&](std::uint16_t port) -> std::optional<std::string> {
                auto it = fixed_ports.find(port);
                return it == fixed_ports.end() ? std::nullopt : std::optional<std::string>(it->second);
            };
            return decide_forward(request, grant, config, lookup, by_port);
        });
    } catch (const std::exception& e) {
        return refuse("registry_error", e.what());
    }
    if (!decision.allowed) {
        if (decision.takeover_attempt) {
            ctx_.counters.add(Counter::kTakeoverAttempts);
            log_line("takeover attempt client=" + s.client + " fingerprint=" + s.fingerprint +
                     " requested=" + requested_text(request.bind_address, request.bind_port) +
                     " detail=" + log_quote(decision.message));
        }
        return refuse(decision.reason, decision.message);
    }
    for (const auto& f : s.forwards) {
        if (!f->dead && f->target == decision.target) {
            return refuse("duplicate", "this session already forwards target \"" + decision.target + "\"");
        }
    }

    // 3 + 4. Bind and record, atomically with respect to other workers.
    auto forward = std::make_unique<Forward>();
    forward->id = next_object_id();
    forward->session = &s;
    forward->target = decision.target;
    forward->requested_address = request.bind_address;
    forward->requested_port = request.bind_port;
    std::optional<TunnelOwner> previous;
    std::string failure;
    std::string refusal = "bind_failed";
    {
        std::lock_guard lock(ctx_.tunnels_mu);
        auto current = ctx_.tunnels.find(decision.target);
        if (current != ctx_.tunnels.end()) previous = current->second;
        auto address = ctx_.addresses.next([&](std::uint32_t a) {
            for (const auto& [name, owner] : ctx_.tunnels)
                if (owner.address == a) return true;
            return false;
        });
        auto in_use = [&](std::uint16_t port) {
            for (const auto& [name, owner] : ctx_.tunnels) {
                if (owner.port == port && name != decision.target) return true;
            }
            // A declared fixed port belongs to its target, connected or not.
            auto fixed = fixed_ports.find(port);
            return fixed != fixed_ports.end() && fixed->second != decision.target;
        };
        int err = 0;
        auto try_bind = [&](std::uint16_t port) {
            forward->listen_fd = bind_listener(*address, port, false, err);
            return forward->listen_fd >= 0;
        };
        std::optional<std::uint16_t> port;
        if (!address) {
            failure = "no free loopback address";
        } else if (decision.fixed_port != 0) {
            if (in_use(decision.fixed_port)) {
                failure = "port " + std::to_string(decision.fixed_port) + " is used by another tunnel";
            } else if (!try_bind(decision.fixed_port)) {
                failure = "cannot listen on " + endpoint_text(*address, decision.fixed_port) + ": " +
                          std::strerror(err);
            } else if ((forward->fixed_fd = bind_listener(monitoring_proxy::registry::kLoopbackAddress,
                                                          decision.fixed_port, true, err)) < 0) {
                failure =
                    "cannot listen on 127.0.0.1:" + std::to_string(decision.fixed_port) + ": " + std::strerror(err);
            } else {
                port = decision.fixed_port;
            }
        } else {
            std::optional<std::uint16_t> preferred;
            if (previous)
                preferred = previous->port;
            else if (auto it = ctx_.last_port.find(decision.target); it != ctx_.last_port.end())
                preferred = it->second;
            port = ctx_.allocator.allocate(in_use, try_bind, preferred);
            if (!port) failure = "no free port in --port-range";
        }
        if (port && !watch_listeners(*forward, failure)) port.reset();
        if (port) {
            forward->address = *address;
            forward->port = *port;
            TunnelRecord record{*port, ctx_.instance_id, now_unix_ms(), s.client, s.fingerprint, *address};
            try {
                ctx_.registry.with([&](auto& reg) {
                    if (decision.self_register) {
                        reg.update_declared([&](DeclaredTxn& txn) {
                            if (txn.get(decision.target)) return;  // declared meanwhile: keep the operator's record
                            TargetRecord target;
                            target.created_unix = now_unix_ms() / 1000;
                            target.origin = Origin::kSelfRegistered;
                            target.key_fingerprints = {s.fingerprint};
                            txn.put(decision.target, target);
                        });
                    }
                    reg.update_live([&](LiveTxn& txn) { txn.put_tunnel(decision.target, record); });
                    return 0;
                });
                ctx_.tunnels[decision.target] =
                    TunnelOwner{this, s.id, forward->id, *address, *port, s.client};
                ctx_.last_port[decision.target] = *port;
            } catch (const std::exception& e) {
                failure = std::string("registry: ") + e.what();
                refusal = "registry_error";
                port.reset();
            }
        }
        if (!port) close_listeners(*forward);
    }
    if (forward->listen_fd < 0) return refuse(refusal, failure);

    forward->channel_port = request.bind_port != 0 ? request.bind_port : forward->port;

    // 5. Reply (with the port when the client asked for port 0: it prints "Allocated port ...").
    ssh_message_global_request_reply_success(msg, forward->port);
    if (decision.self_register) {
        log_line("target self-registered target=" + decision.target + " fingerprint=" + s.fingerprint +
                 " client=" + s.client);
    }
    log_line("forward added client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + decision.target +
             " port=" + std::to_string(forward->port) + " address=" + ipv4_text(forward->address) +
             " requested=" + requested_text(request.bind_address, request.bind_port));
    ctx_.counters.add(Counter::kForwards);
    if (previous) {
        // Newest session wins: the old forward goes at once, its session too if nothing else remains.
        ctx_.counters.add(Counter::kTakeovers, decision.target);
        log_line("takeover client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + decision.target +
                 " port=" + std::to_string(forward->port) + " previous_client=" + previous->client);
        Mail cancel{Mail::Type::kCancelForward};
        cancel.session_id = previous->session_id;
        cancel.forward_id = previous->forward_id;
        cancel.reason = "takeover";
        previous->worker->post(std::move(cancel));
    }
    s.forwards.push_back(std::move(forward));
    return 0;
}

// Watched before the forward is recorded: a recorded listener nothing accepts on would only ever time out.
bool Worker::watch_listeners(Forward& f, std::string& failure) {
    for (int fd : {f.listen_fd, f.fixed_fd}) {
        if (fd < 0) continue;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = static_cast<Pollable*>(&f);
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            failure = std::string("cannot watch the listener: ") + std::strerror(errno);
            return false;
        }
    }
    return true;
}

// Closing a descriptor also takes it out of the epoll set.
void Worker::close_listeners(Forward& f) {
    for (int* fd : {&f.listen_fd, &f.fixed_fd}) {
        if (*fd < 0) continue;
        close(*fd);
        *fd = -1;
    }
}

int Worker::handle_cancel_forward(Session& s, ssh_message msg) {
    const char* addr_c = ssh_message_global_request_address(msg);
    std::string address = addr_c ? addr_c : "";
    const std::uint32_t port = requested_port(msg);
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
void Worker::remove_forward(Forward& f, const std::string& why) {
    if (f.dead) return;
    f.dead = true;
    garbage_ = true;
    bool owned = false;
    {
        std::lock_guard lock(ctx_.tunnels_mu);
        auto it = ctx_.tunnels.find(f.target);
        // After a takeover the table names the new forward: the registry entry is the new session's.
        if (it != ctx_.tunnels.end() && it->second.forward_id == f.id) {
            ctx_.tunnels.erase(it);
            owned = true;
            try {
                ctx_.registry.with([&](auto& reg) {
                    reg.update_live([&](monitoring_proxy::registry::LiveTxn& txn) {
                        txn.remove_tunnel(f.target, ctx_.instance_id);
                    });
                    return 0;
                });
            } catch (const std::exception& e) {
                log_line("registry error while removing tunnel " + f.target + ": " + e.what());
            }
        }
    }
    close_listeners(f);
    Session& s = *f.session;
    std::size_t open_relays = 0;
    for (auto& r : s.relays) {
        if (r->forward_id != f.id || r->dead) continue;
        relay_close(*r, "forward ended (" + why + ")");
        ++open_relays;
    }
    log_line("forward removed client=" + s.client + " fingerprint=" + s.fingerprint + " target=" + f.target +
             " port=" + std::to_string(f.port) + " reason=" + log_quote(why) +
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
                // Out of descriptors: the pending connection stays readable and would make epoll spin. Stop
                // listening for events until the next timer tick (resume_listeners) and say so once.
                log_line("accept paused target=" + f.target + " port=" + std::to_string(f.port) + ": " +
                         std::strerror(errno));
                set_listener_interest(f, 0);
                paused_listeners_.push_back(f.id);
                return;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
                log_line("accept error target=" + f.target + " port=" + std::to_string(f.port) + ": " +
                         std::strerror(errno));
            }
            return;
        }
        char host[INET6_ADDRSTRLEN] = "127.0.0.1";
        std::uint16_t peer_port = 0;
        if (peer.ss_family == AF_INET) {
            auto* in = reinterpret_cast<sockaddr_in*>(&peer);
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            peer_port = ntohs(in->sin_port);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ++f.connects;
        ctx_.counters.add(Counter::kConnects, f.target);
        start_relay(f, fd, host, peer_port);
    }
}

void Worker::set_listener_interest(Forward& f, std::uint32_t events) {
    for (int fd : {f.listen_fd, f.fixed_fd}) {
        if (fd < 0) continue;
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = static_cast<Pollable*>(&f);
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0)
            log_line("listener error target=" + f.target + ": epoll_ctl: " + std::strerror(errno));
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
