// Whether an open LMDB environment is still the file at its path, as the Reader needs to know: a registry
// directory that is removed and created again (restored from a backup, rebuilt after corruption) must be reopened,
// or a reader would read the old, unlinked file forever; and a data file truncated in place (`cp backup data.mdb`
// truncates first) would kill the reader with SIGBUS on its next read past the new end.
#pragma once

#include <sys/types.h>

#include <string>

namespace monitoring_proxy::registry {

class FileWatch {
public:
    FileWatch() = default;
    explicit FileWatch(std::string path);  // opens it if it exists; a missing file is watched for appearing
    FileWatch(FileWatch&& other) noexcept;
    FileWatch& operator=(FileWatch&& other) noexcept;
    FileWatch(const FileWatch&) = delete;
    FileWatch& operator=(const FileWatch&) = delete;
    ~FileWatch();

    // One fstat: LMDB files never shrink, so a smaller file was truncated in place.
    bool shrunk() noexcept;
    // One stat: the path now names another file than the one opened (or one appeared where none was).
    bool replaced() const noexcept;

private:
    std::string path_;
    int fd_ = -1;
    off_t size_ = 0;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
};

}  // namespace monitoring_proxy::registry
