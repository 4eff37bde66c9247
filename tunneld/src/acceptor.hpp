// The acceptor: its own thread and listening socket (ssh_bind_listen's backlog of 10 is too small for a
// reconnect storm). Each accepted fd becomes an ssh_session via ssh_bind_accept_fd and goes to the least busy
// worker.
#pragma once

#include <libssh/server.h>

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
    void run() noexcept;
    ServerContext& ctx_;
    ssh_bind bind_;
    int listen_fd_ = -1;
    int stop_fd_ = -1;
    std::thread thread_;
    std::size_t next_worker_ = 0;
};

}  // namespace tunneld
