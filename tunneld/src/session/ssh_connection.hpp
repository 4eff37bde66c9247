// SshConnection: the one owner of a client's ssh_session, the session's private ssh_event and the dup of its
// socket that the worker's epoll set watches (see worker.hpp for why each session polls its own event). These are
// freed here and nowhere else, in the order libssh needs: out of the event, the session (closes its socket), the
// event, then the watched dup (taken out of the epoll set first: a registration lives as long as any dup of the
// socket is open). Move-only.
#pragma once

#include <libssh/libssh.h>

#include <cstdint>
#include <string>

namespace tunneld {

class SshConnection {
public:
    SshConnection() = default;
    explicit SshConnection(ssh_session ssh) noexcept : ssh_(ssh) {}  // adopts ssh (and its socket)
    ~SshConnection() { reset(); }
    SshConnection(SshConnection&& other) noexcept;
    SshConnection& operator=(SshConnection&& other) noexcept;
    SshConnection(const SshConnection&) = delete;
    SshConnection& operator=(const SshConnection&) = delete;

    ssh_session session() const { return ssh_; }
    ssh_event event() const { return event_; }
    int watch_fd() const { return watch_fd_; }
    explicit operator bool() const { return ssh_ != nullptr; }

    // Gives the session its own event and registers a dup of its socket in epoll_fd with `data`; false with
    // `why` (naming the descriptor) when a step fails. What was made is freed by reset() as usual.
    bool watch(int epoll_fd, void* data, std::uint32_t events, std::string& why);
    // Changes the watched events; false with `why` when epoll_ctl refuses.
    bool set_interest(void* data, std::uint32_t events, std::string& why);
    // Leaves the event and sends the disconnect; the objects stay until reset() or destruction.
    void disconnect() noexcept;
    // Frees everything this connection owns; idempotent.
    void reset() noexcept;

private:
    ssh_session ssh_ = nullptr;
    ssh_event event_ = nullptr;
    bool in_event_ = false;
    int watch_fd_ = -1;
    int epoll_fd_ = -1;  // where watch_fd_ is registered, -1 when it is not
};

}  // namespace tunneld
