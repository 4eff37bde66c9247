#include "log.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace tunneld {

void log_line(std::string_view text) noexcept {
    try {
        auto now = std::chrono::system_clock::now();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
        std::time_t secs = static_cast<std::time_t>(ms / 1000);
        std::tm tm{};
        gmtime_r(&secs, &tm);
        char head[80];
        int n = std::snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ tunneld[%d]: ", tm.tm_year + 1900,
                              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000),
                              static_cast<int>(getpid()));
        std::string line(head, n > 0 ? static_cast<std::size_t>(n) : 0);
        line.append(text);
        line.push_back('\n');
        std::size_t off = 0;
        while (off < line.size()) {
            ssize_t w = ::write(2, line.data() + off, line.size() - off);
            if (w <= 0) break;
            off += static_cast<std::size_t>(w);
        }
    } catch (...) {
        // Logging must never take the daemon down.
    }
}

std::string log_quote(std::string_view value) {
    bool plain = !value.empty();
    for (char c : value) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f || c == '"' || c == '\\' || c == '=') plain = false;
    }
    if (plain) return std::string(value.substr(0, 256));
    std::string out = "\"";
    for (char c : value.substr(0, 256)) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out.push_back(c);
        }
    }
    out.push_back('"');
    return out;
}

void close_fd(int fd, std::string_view what) noexcept {
    if (fd < 0 || ::close(fd) == 0) return;
    const int err = errno;
    try {
        log_line("close " + std::string(what) + " fd " + std::to_string(fd) + ": " + std::strerror(err));
    } catch (...) {
    }
}

}  // namespace tunneld
