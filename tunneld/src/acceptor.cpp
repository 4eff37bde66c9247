#include "acceptor.hpp"

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
#include "worker.hpp"

namespace tunneld {

using Counter = monitoring_proxy::registry::TunneldCounter;

namespace {

constexpr int kMaxUnauthenticated = 256;  // beyond this, new connections are closed at once (MaxStartups)

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
    listen_fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (listen_fd_ >= 0) setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listen_fd_ < 0 || ::bind(listen_fd_, res->ai_addr, res->ai_addrlen) != 0 || listen(listen_fd_, 1024) != 0) {
        std::string err = std::strerror(errno);
        freeaddrinfo(res);
        if (listen_fd_ >= 0) close(listen_fd_);
        throw std::runtime_error("cannot listen on " + ctx_.options.listen_host + ":" + port + ": " + err);
    }
    freeaddrinfo(res);
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Acceptor::~Acceptor() {
    stop();
    if (listen_fd_ >= 0) close(listen_fd_);
    if (stop_fd_ >= 0) close(stop_fd_);
}

void Acceptor::start() {
    thread_ = std::thread([this] { run(); });
}

void Acceptor::stop() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(stop_fd_, &one, sizeof one);
    if (thread_.joinable()) thread_.join();
}

void Acceptor::run() noexcept {
    while (true) {
        pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            log_line(std::string("acceptor poll error: ") + std::strerror(errno));
            return;
        }
        if (fds[1].revents) return;
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
        if (fd < 0) continue;
        try {
            std::string ip;
            std::string client = describe_peer(peer, ip);
            if (ctx_.unauthenticated.load() >= kMaxUnauthenticated) {
                ctx_.counters.add(Counter::kConnectionsRefused, "unauthenticated_cap");
                log_line("connect refused client=" + client + " reason=\"too many unauthenticated connections (" +
                         std::to_string(kMaxUnauthenticated) + ")\"");
                close(fd);
                continue;
            }
            ssh_session session = ssh_new();
            if (session == nullptr || ssh_bind_accept_fd(bind_, session, fd) != SSH_OK) {
                log_line("connect refused client=" + client +
                         " reason=" + log_quote(session ? ssh_get_error(bind_) : "out of memory"));
                if (session)
                    ssh_free(session);  // owns the fd once ssh_bind_accept_fd has seen it
                else
                    close(fd);
                continue;
            }
            ctx_.unauthenticated.fetch_add(1);
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
            mail.ssh = session;
            mail.fd = fd;
            mail.client = client;
            mail.client_ip = ip;
            target->post(std::move(mail));
        } catch (const std::exception& e) {
            log_line(std::string("acceptor error: ") + e.what());
        }
    }
}

}  // namespace tunneld
