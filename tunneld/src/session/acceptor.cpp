#include "session/acceptor.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "log.hpp"
#include "session/worker.hpp"

namespace tunneld {

using Counter = monitoring_proxy::registry::TunneldCounter;

namespace {

// How long the acceptor stops watching its listener when out of descriptors: a descriptor freed meanwhile is used
// within this time, the pending connections wait in the kernel's backlog, and at most 10 wakeups a second.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

std::string describe_peer(const sockaddr_storage& peer, std::string& ip) {
    char host[INET6_ADDRSTRLEN] = "?";
    std::uint16_t port = 0;
    if (peer.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (peer.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&peer);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        }
        port = ntohs(in6->sin6_port);
    }
    ip = host;
    return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

}  // namespace

Acceptor::Acceptor(ServerContext& ctx, ssh_bind bind) : ctx_(ctx), bind_(bind) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    addrinfo* res = nullptr;
    std::string port = std::to_string(ctx_.options.listen_port);
    int rc = getaddrinfo(ctx_.options.listen_host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) throw std::runtime_error("--listen " + ctx_.options.listen_host + ": " + gai_strerror(rc));
    // Non-blocking: a connection reset between poll and accept must not block the acceptor.
    listen_fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (listen_fd_ < 0 || setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || ::bind(listen_fd_, res->ai_addr, res->ai_addrlen) != 0 || listen(listen_fd_, 1024) != 0) {
        std::string err = std::strerror(errno);
        freeaddrinfo(res);
        if (listen_fd_ >= 0) close(listen_fd_);
        throw std::runtime_error("cannot listen on " + ctx_.options.listen_host + ":" + port + ": " + err);
    }
    freeaddrinfo(res);
    const std::string& host = ctx_.options.listen_host;
    listen_text_ = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) {
        std::string err = std::strerror(errno);
        close_fd(listen_fd_, "SSH listener");
        throw std::runtime_error("cannot create the acceptor's stop event: " + err);
    }
}

Acceptor::~Acceptor() {
    stop();
    close_fd(listen_fd_, "SSH listener");
    close_fd(stop_fd_, "acceptor stop event");
}

void Acceptor::start() {
    thread_ = std::thread([this] { run(); });
}

void Acceptor::stop() {
    std::uint64_t one = 1;
    if (::write(stop_fd_, &one, sizeof one) < 0 && errno != EAGAIN)
        log_line("acceptor stop event fd " + std::to_string(stop_fd_) + " write: " + std::strerror(errno));
    if (thread_.joinable()) thread_.join();
}

void Acceptor::run() noexcept {
    while (true) {
        pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
        // Out of descriptors, the pending connection keeps the listener readable: watch only the stop event for a
        // while, so a descriptor freed meanwhile is used within kAcceptBackoff and no core spins on accept.
        nfds_t watched = backing_off_ ? 1 : 2;
        int timeout_ms = backing_off_ ? static_cast<int>(kAcceptBackoff.count()) : -1;
        int ready = poll(fds, watched, timeout_ms);
        if (ready < 0) {
            if (errno == EINTR) continue;
            log_line(std::string("acceptor poll error: ") + std::strerror(errno));
            return;
        }
        if (fds[0].revents) return;
        if (backing_off_) {  // the pause is over: watch the listener again
            backing_off_ = false;
            continue;
        }
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
        if (fd < 0) {
            on_accept_error(errno);
            continue;
        }
        if (paused_since_) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - *paused_since_).count();
            log_line("accept resumed listen=" + listen_text_ + " paused_ms=" + std::to_string(ms));
            paused_since_.reset();
        }
        try {
            hand_over(fd, peer);
        } catch (const std::exception& e) {
            log_line(std::string("acceptor error: ") + e.what());
        }
    }
}

void Acceptor::on_accept_error(int err) {
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        backing_off_ = true;
        if (!paused_since_) {
            paused_since_ = Clock::now();
            ctx_.counters.add(Counter::kAcceptPauses);
            log_line("accept paused listen=" + listen_text_ + " reason=" + log_quote(std::strerror(err)) +
                     " retry_ms=" + std::to_string(kAcceptBackoff.count()));
        }
        return;
    }
    if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ECONNABORTED)
        log_line(std::string("accept error listen=") + listen_text_ + ": " + std::strerror(err));
}

void Acceptor::hand_over(int fd, const sockaddr_storage& peer) {
    std::string ip;
    std::string client = describe_peer(peer, ip);
    Admission verdict = ctx_.admission.admit(ip);
    if (verdict != Admission::kAdmitted) {
        close_fd(fd, "client socket");
        refuse(verdict, client, ip);
        return;
    }
    SshConnection conn(ssh_new());
    if (!conn || ssh_bind_accept_fd(bind_, conn.session(), fd) != SSH_OK) {
        log_line("connect refused client=" + client + " fd=" + std::to_string(fd) +
                 " reason=" + log_quote(conn ? ssh_get_error(bind_) : "out of memory"));
        if (!conn) close_fd(fd, "client socket");  // otherwise the session owns it once ssh_bind_accept_fd saw it
        ctx_.admission.release(ip);
        return;
    }
    // Least sessions wins; ties go round-robin, so a burst (counts not yet updated) still spreads out.
    std::size_t n = ctx_.workers.size();
    Worker* target = ctx_.workers[next_worker_ % n].get();
    for (std::size_t i = 1; i < n; ++i) {
        Worker* w = ctx_.workers[(next_worker_ + i) % n].get();
        if (w->session_count() < target->session_count()) target = w;
    }
    ++next_worker_;
    log_line("connect client=" + client);
    Mail mail{Mail::Type::kNewSession};
    mail.conn = std::move(conn);
    mail.client = client;
    mail.client_ip = ip;
    target->post(std::move(mail));
}

void Acceptor::refuse(Admission verdict, const std::string& client, const std::string& ip) {
    const char* reason = admission_reason(verdict);
    ctx_.counters.add(Counter::kConnectionsRefused, reason);
    // A flood must not become a log flood: one line per reason and second, saying how many went unlogged.
    RefusalLog& slot = refusal_log_[reason];
    auto now = Clock::now();
    if (slot.last_line && now - *slot.last_line < std::chrono::seconds(1)) {
        ++slot.unlogged;
        return;
    }
    const PreauthLimits& limits = ctx_.admission.limits();
    std::string detail;
    switch (verdict) {
        case Admission::kPerSource:
            detail = std::to_string(limits.per_source) + " unauthenticated connections from " + ip +
                     " already (the per-address limit)";
            break;
        case Admission::kRandomEarlyDrop:
            detail = "random early drop: " + std::to_string(ctx_.admission.total()) +
                     " unauthenticated connections (dropping from " + std::to_string(limits.drop_start) + ", all at " +
                     std::to_string(limits.full) + ")";
            break;
        default:
            detail = "too many unauthenticated connections (" + std::to_string(limits.full) + ")";
            break;
    }
    log_line("connect refused client=" + client + " reason=" + reason + " detail=" + log_quote(detail) +
             (slot.unlogged ? " unlogged_since_last=" + std::to_string(slot.unlogged) : std::string()));
    slot.last_line = now;
    slot.unlogged = 0;
}

}  // namespace tunneld
