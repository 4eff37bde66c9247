// The acceptor: its own thread and listening socket (ssh_bind_listen's backlog of 10 is too small for a
// reconnect storm). Each accepted fd passes pre-auth admission (ServerContext::admission), becomes an
// ssh_session via ssh_bind_accept_fd and goes to the least busy worker. Out of descriptors it pauses instead of
// spinning on a listener that stays readable.
#pragma once

#include <libssh/server.h>

#include <sys/socket.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "server_context.hpp"

namespace tunneld {

class Acceptor {
public:
    // Throws std::runtime_error when the address cannot be bound.
    Acceptor(ServerContext& ctx, ssh_bind bind);
    ~Acceptor();
    void start();
    void stop();  // any thread; joins

private:
    using Clock = std::chrono::steady_clock;
    struct RefusalLog {
        std::optional<Clock::time_point> last_line;
        std::uint64_t unlogged = 0;
    };

    void run() noexcept;
    void on_accept_error(int err);
    void hand_over(int fd, const sockaddr_storage& peer);
    void refuse(Admission verdict, const std::string& client, const std::string& ip);

    ServerContext& ctx_;
    ssh_bind bind_;
    int listen_fd_ = -1;
    int stop_fd_ = -1;
    std::thread thread_;
    std::size_t next_worker_ = 0;
    std::string listen_text_;                      // ADDR:PORT for log lines
    bool backing_off_ = false;                     // out of descriptors: the listener is not watched for now
    std::optional<Clock::time_point> paused_since_;  // the current out-of-descriptors episode, if any
    std::map<std::string, RefusalLog> refusal_log_;  // per refusal reason
};

}  // namespace tunneld
