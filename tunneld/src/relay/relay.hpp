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
    RelayState state;
    // Flow control: which side waits, and whether the relay is in the worker's list for it.
    bool socket_full = false;    // channel data waits in libssh's buffer for EPOLLOUT (down)
    bool window_closed = false;  // socket data waits for the client's window; in Worker::window_blocked_ (up)
    bool queued = false;         // in Worker::relay_work_: re-evaluated after this round
    Clock::time_point accepted;                     // when the scraper connected: bounds the channel open
    std::optional<Clock::time_point> scraper_gone;  // first EOF/FIN from the scraper: bounds the client's answer
    Clock::time_point client_active;                // last data or EOF from the client on this channel
    std::string to_tcp;  // channel data read but not yet accepted by the socket
    std::string to_ssh;  // socket data not yet accepted by the channel
    std::uint32_t epoll_mask = 0;
    std::uint64_t bytes_up = 0;    // scraper -> host: read from the socket, written to the channel
    std::uint64_t bytes_down = 0;  // host -> scraper: read from the channel, sent to the socket
};

}  // namespace tunneld
