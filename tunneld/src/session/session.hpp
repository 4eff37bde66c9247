// One client's SSH connection as the worker serves it: its libssh objects (owned by `conn`), who it proved to be,
// its forwards and relays.
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "forward/forward.hpp"
#include "policy/forward_policy.hpp"
#include "relay/relay.hpp"
#include "session/pollable.hpp"
#include "session/ssh_connection.hpp"

namespace tunneld {

class Worker;

struct Session : Pollable {
    Session() : Pollable(Kind::kSession) {}
    std::uint64_t id = 0;
    Worker* worker = nullptr;
    SshConnection conn;  // session, its own poll context (only its socket: see worker.hpp), the watched dup
    ssh_session ssh() const { return conn.session(); }
    std::uint32_t epoll_mask = 0;
    std::string client;  // "ADDR:PORT"
    std::string client_ip;
    Clock::time_point started;
    ssh_counter_struct socket_counter{};
    ssh_counter_struct packet_counter{};
    bool authenticated = false;
    std::string user;
    std::string fingerprint = "-";
    KeyGrant grant;
    unsigned auth_failures = 0;
    std::uint64_t last_in_packets = 0;
    unsigned missed_keepalives = 0;
    std::vector<std::unique_ptr<Forward>> forwards;
    std::vector<std::unique_ptr<Relay>> relays;
    std::vector<ssh_channel> shell_refusals;  // session channels whose shell/exec we answer with a message
    std::vector<ssh_channel> refusals_due;    // those whose shell/exec/subsystem request came: answer them now
    bool closing = false;
    bool touched = false;  // in Worker::touched_: its epoll interest is re-evaluated after this round
    std::string close_reason;
    std::uint64_t relay_bytes_up = 0, relay_bytes_down = 0;
    std::size_t live_forwards() const;
    // An unknown key that proved itself (publickey answered with partial success) and may enrol with a join
    // token over keyboard-interactive (session_messages.cpp).
    std::string enrol_fingerprint, enrol_blob, enrol_type;
    bool enrol_prompted = false;  // the token prompt was sent: the next keyboard-interactive message answers it
};

}  // namespace tunneld
