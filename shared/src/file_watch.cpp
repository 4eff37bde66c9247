#include "monitoring_proxy/file_watch.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace monitoring_proxy::registry {

FileWatch::FileWatch(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd_ >= 0 && ::fstat(fd_, &st) == 0) {
        size_ = st.st_size;
        dev_ = st.st_dev;
        ino_ = st.st_ino;
    }
}

FileWatch::FileWatch(FileWatch&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_), dev_(other.dev_),
      ino_(other.ino_) {}

FileWatch& FileWatch::operator=(FileWatch&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        path_ = std::move(other.path_);
        fd_ = std::exchange(other.fd_, -1);
        size_ = other.size_;
        dev_ = other.dev_;
        ino_ = other.ino_;
    }
    return *this;
}

FileWatch::~FileWatch() {
    if (fd_ >= 0) ::close(fd_);
}

bool FileWatch::shrunk() noexcept {
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0) return false;
    if (st.st_size < size_) return true;
    size_ = st.st_size;
    return false;
}

bool FileWatch::replaced() const noexcept {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return fd_ >= 0;  // gone
    return fd_ < 0 || st.st_dev != dev_ || st.st_ino != ino_;
}

}  // namespace monitoring_proxy::registry
