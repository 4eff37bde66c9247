// One SSH session of the load client: connect, public-key auth, one tcpip-forward, then answer forwarded-tcpip
// channels with the in-process exporter. Everything is non-blocking; the main loop calls drive() when the
// session's socket is ready and registers the events wanted_events() asks for.
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "http_responder.hpp"
#include "options.hpp"

namespace loadclient {

struct SessionTotals {
    std::uint64_t channels = 0;       // forwarded-tcpip channels accepted
    std::uint64_t requests = 0;       // HTTP requests answered
    std::uint64_t bytes_sent = 0;     // response bytes accepted by libssh
    std::uint64_t channel_errors = 0; // channels closed because of a write error or a garbage request
    std::uint32_t initial_window = 0; // send window the server granted the latest channel (its window policy)
};

class LoadSession {
public:
    enum class State { Idle, Connecting, Authenticating, Forwarding, Established, Failed, Closed };

    LoadSession(int index, const Options& options, ssh_key key, const std::string& response, SessionTotals& totals);
    ~LoadSession();
    LoadSession(const LoadSession&) = delete;
    LoadSession& operator=(const LoadSession&) = delete;

    // Starts (or restarts) the setup. On an immediate failure the state is Failed and error() says why.
    void start(double now);
    // Advances whatever can advance without blocking. `writable`: the socket reported writability.
    void drive(double now, bool writable);
    // Fails the current attempt when its setup has taken longer than the timeout.
    void check_timeout(double now);
    // Disconnects and frees everything (state Closed unless it already Failed).
    void stop();
    // Where the next start() connects (initially --host/--port), and a fresh count of attempts for --retries:
    // a reconnect after the server closed the session is a new setup, not a retry of the old one.
    void set_destination(const Destination& destination) { destination_ = destination; }
    const Destination& destination() const { return destination_; }
    void reset_attempts() { attempts_ = 0; }

    State state() const { return state_; }
    bool in_setup() const {
        return state_ == State::Connecting || state_ == State::Authenticating || state_ == State::Forwarding;
    }
    int fd() const { return fd_; }
    std::uint32_t wanted_events() const;
    // Response bytes are waiting, the channel window allows some, and libssh's socket buffer is empty: drive
    // again without waiting for the socket.
    bool has_immediate_work() const;
    const std::string& error() const { return error_; }
    int attempts() const { return attempts_; }
    double setup_seconds() const { return forwarded_at_ - setup_started_; }

private:
    struct Channel;

    void fail(const std::string& why);
    void release();
    void advance_setup(bool writable);
    void pump_established();
    void serve_channels();
    static int on_message(ssh_session session, ssh_message message, void* self) noexcept;

    const int index_;
    const Options& options_;
    ssh_key key_;
    const std::string& response_;
    SessionTotals& totals_;

    Destination destination_;
    State state_ = State::Idle;
    ssh_session ssh_ = nullptr;
    ssh_event event_ = nullptr;
    int fd_ = -1;
    bool tcp_connected_ = false;
    int attempts_ = 0;
    double setup_started_ = 0;
    double forwarded_at_ = 0;
    std::string error_;
    std::list<std::unique_ptr<Channel>> channels_;
};

}  // namespace loadclient
