#include "session/ssh_connection.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "log.hpp"

namespace tunneld {

SshConnection::SshConnection(SshConnection&& other) noexcept
    : ssh_(std::exchange(other.ssh_, nullptr)),
      event_(std::exchange(other.event_, nullptr)),
      in_event_(std::exchange(other.in_event_, false)),
      watch_fd_(std::exchange(other.watch_fd_, -1)),
      epoll_fd_(std::exchange(other.epoll_fd_, -1)) {}

SshConnection& SshConnection::operator=(SshConnection&& other) noexcept {
    if (this != &other) {
        reset();
        ssh_ = std::exchange(other.ssh_, nullptr);
        event_ = std::exchange(other.event_, nullptr);
        in_event_ = std::exchange(other.in_event_, false);
        watch_fd_ = std::exchange(other.watch_fd_, -1);
        epoll_fd_ = std::exchange(other.epoll_fd_, -1);
    }
    return *this;
}

bool SshConnection::watch(int epoll_fd, void* data, std::uint32_t events, std::string& why) {
    const int fd = ssh_get_fd(ssh_);
    event_ = ssh_event_new();
    if (event_ == nullptr || ssh_event_add_session(event_, ssh_) != SSH_OK) {
        why = "cannot give the session (fd " + std::to_string(fd) + ") its own ssh_event";
        return false;
    }
    in_event_ = true;
    watch_fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (watch_fd_ < 0) {
        why = "cannot duplicate the session socket (fd " + std::to_string(fd) + "): " + std::strerror(errno);
        return false;
    }
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = data;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, watch_fd_, &ev) != 0) {
        why = "cannot watch the session socket (fd " + std::to_string(watch_fd_) + "): " + std::strerror(errno);
        return false;
    }
    epoll_fd_ = epoll_fd;
    return true;
}

bool SshConnection::set_interest(void* data, std::uint32_t events, std::string& why) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = data;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, watch_fd_, &ev) == 0) return true;
    why = "epoll_ctl MOD fd " + std::to_string(watch_fd_) + ": " + std::strerror(errno);
    return false;
}

void SshConnection::disconnect() noexcept {
    if (in_event_) ssh_event_remove_session(event_, ssh_);
    in_event_ = false;
    if (ssh_ != nullptr) ssh_disconnect(ssh_);
}

void SshConnection::reset() noexcept {
    if (in_event_) ssh_event_remove_session(event_, ssh_);
    in_event_ = false;
    if (ssh_ != nullptr) ssh_free(ssh_);  // closes the socket
    ssh_ = nullptr;
    if (event_ != nullptr) ssh_event_free(event_);
    event_ = nullptr;
    if (watch_fd_ >= 0) {
        if (epoll_fd_ >= 0 && epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, watch_fd_, nullptr) != 0)
            log_line("epoll_ctl DEL session watch fd " + std::to_string(watch_fd_) + ": " + std::strerror(errno));
        if (close(watch_fd_) != 0)
            log_line("close session watch fd " + std::to_string(watch_fd_) + ": " + std::strerror(errno));
    }
    watch_fd_ = -1;
    epoll_fd_ = -1;
}

}  // namespace tunneld
