// A real single-member etcd for one test: its own temp data dir and free loopback ports, started by the test
// and stopped by its pid (SIGTERM, then SIGKILL) when the object goes.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "monitoring_proxy/etcd_client.hpp"
#include "temp_registry.hpp"

inline int free_loopback_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot pick a free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

class EtcdProcess {
public:
    EtcdProcess() : client_port_(free_loopback_port()), peer_port_(free_loopback_port()) { start(); }
    ~EtcdProcess() { stop(); }
    EtcdProcess(const EtcdProcess&) = delete;
    EtcdProcess& operator=(const EtcdProcess&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
    int port() const { return client_port_; }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 100; ++i) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the exit, bounded
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    // Starts it again on the same ports and data.
    void start() {
        const std::string client = url();
        const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
        std::vector<std::string> args = {"etcd", "--name", "unit", "--data-dir", dir_.sub("data"),
                                         "--listen-client-urls", client, "--advertise-client-urls", client,
                                         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                         "--initial-cluster", "unit=" + peer, "--log-level", "error",
                                         "--logger", "zap"};
        pid_ = ::fork();
        if (pid_ == 0) {
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execvp("etcd", argv.data());
            ::_exit(127);
        }
        // Ready when a read answers (deadline 20 s).
        monitoring_proxy::etcd::Client probe({monitoring_proxy::etcd::parse_endpoints(client), {},
                                              std::chrono::milliseconds(500)});
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        for (;;) {
            try {
                probe.range_prefix("/probe/");
                return;
            } catch (const monitoring_proxy::etcd::EtcdError& e) {
                if (std::chrono::steady_clock::now() > deadline) {
                    stop();  // the constructor throwing skips the destructor: no etcd outlives its data dir
                    throw std::runtime_error(std::string("etcd did not start: ") + e.what());
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        }
    }

private:
    TempDir dir_;
    int client_port_, peer_port_;
    pid_t pid_ = -1;
};
