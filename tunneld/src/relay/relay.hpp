// One relayed TCP connection <-> forwarded-tcpip channel: its life is `state` (relay_state.hpp); the rest is
// the I/O the worker does for it (relay.cpp).
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <cstdint>
#include <optional>
#include <string>

#include "relay/relay_state.hpp"
#include "session/pollable.hpp"

namespace tunneld {

struct Session;

struct Relay : Pollable {
    Relay() : Pollable(Kind::kRelay) {}
    Session* session = nullptr;
    std::uint64_t forward_id = 0;  // the forward that accepted it: it ends with that forward
    std::string target;
    int fd = -1;
    ssh_channel channel = nullptr;
    ssh_channel_callbacks_struct callbacks{};
    std::string peer_host;
    std::uint16_t peer_port = 0;
    std::string open_address;  // forwarded-tcpip "address that was connected" = what the client asked
    std::uint32_t open_port = 0;
    RelayState state;  // the relay's life: every end seen and passed on (relay_state.hpp)
    // Flow control and scheduling, beside the phase rather than in it: each direction can wait in every open
    // phase, many times over a relay's life, so as phases they would multiply the grid by four.
    bool socket_full = false;    // down: channel data waits in libssh's buffer for EPOLLOUT
    bool window_closed = false;  // up: socket data waits for the client's window; true exactly while the relay is in
                                 // Worker::window_blocked_ (set by wait_for_window, cleared by whoever drops it)
    bool queued = false;         // true exactly while in Worker::relay_work_: re-evaluated after this round
    Clock::time_point accepted;  // when the scraper connected: bounds the channel open
    // The scraper's first FIN (EPOLLRDHUP) or EOF: bounds the client's answer, and ends watching EPOLLRDHUP (level-
    // triggered, it would stay set). The FIN is no phase: data before it is still read and relayed as before.
    std::optional<Clock::time_point> scraper_gone;
    Clock::time_point client_active;                // last data or EOF from the client on this channel
    std::string to_tcp;  // channel data read but not yet accepted by the socket
    std::string to_ssh;  // socket data not yet accepted by the channel
    std::uint32_t epoll_mask = 0;
    std::uint64_t bytes_up = 0;    // scraper -> host: read from the socket, written to the channel
    std::uint64_t bytes_down = 0;  // host -> scraper: read from the channel, sent to the socket
};

}  // namespace tunneld
