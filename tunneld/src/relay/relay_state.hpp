// The life of one relay (a scraped TCP connection <-> a forwarded-tcpip channel) as one state machine, apart
// from any I/O so it can be tested without libssh. The worker reports what happened (the client accepted the
// channel, the scraper's EOF, the client's EOF or close, the socket shut down) and asks next_step() what to do;
// close() ends it. A transition that makes no sense in the current phase is refused (false, phase unchanged): a
// repeated end, an end after the relay ended, a scraper EOF while the socket is not read.
//
// The phase is one value of a grid: what the scraper side has done (open, or its EOF read and passed on to the
// client at once: the worker sends the channel EOF when it reads the socket's EOF, since no socket data can wait
// behind it then) times what the client side has done (open, EOF in, socket shut, channel closed, channel closed
// and socket shut). Plus opening (with a client end that came before the open was accepted) and closed.
//
//                     scraper open     scraper ended
//   client open       kStreaming       kScraperEnded
//   client EOF in     kClientEof       kDraining
//   socket shut       kClientEnded     kDone
//   channel closed    kClientClosed    kDraining (the close changes nothing more: shut, then done)
//   closed + shut     kClientGone      kDone
//
//   opening --channel_opened--> streaming; the client's EOF or close before that is kept in the opening phase
//   (kOpeningClientEof, kOpeningClientClosed) and takes effect with the open.
//   scraper_eof moves right, client_eof / client_close / socket_shut_down move down; close: closed from
//   any phase (with a RelayEnd); nothing leaves closed.
//
// "up" is scraper -> host (socket read, channel written), "down" is host -> scraper.
#pragma once

#include <cstddef>
#include <string>

namespace tunneld {

enum class RelayPhase {
    kOpening,              // channel open sent, the client has not accepted it yet
    kOpeningClientEof,     // not accepted yet here, but the client's EOF already came (libssh saw the accept first)
    kOpeningClientClosed,  // not accepted yet here, but the client already closed the channel
    kStreaming,            // both ways open
    kScraperEnded,         // half-closed by the scraper: its EOF was read and passed on; the client may still send
    kClientEof,            // the client's EOF came: shut the socket's write side once the channel data before it is out
    kClientEnded,          // half-closed by the client: the socket's write side is shut; the socket is still read
    kDraining,             // both ends seen, the scraper's passed on: shut the socket once channel data is out
    kClientClosed,         // the client closed the channel: its data drains to the socket, which is shut, then end
    kClientGone,           // the client closed the channel and the socket is shut: end ("closed by client")
    kDone,                 // both ends passed on: end ("done")
    kClosed,               // ended: the worker frees the socket and the channel between rounds
};

const char* relay_phase_name(RelayPhase phase);

// What the worker should do next to move the relay on.
enum class RelayStep {
    kNone,            // wait for I/O or the peers
    kShutdownSocket,  // pass the client's EOF on to the scraper (shutdown SHUT_WR), then socket_shut_down()
    kCloseByClient,   // the client closed the channel and everything it sent is out: end ("closed by client")
    kCloseDone,       // both EOFs passed on: end ("done")
};

// Why a relay ended. The first three are its expected ends and not logged one by one (a forward that ends logs
// how many relays it closed); the others are logged with their detail.
enum class RelayEnd {
    kDone,            // both EOFs passed on
    kClosedByClient,  // the client closed the channel and everything it sent is out
    kForwardEnded,    // the forward that accepted it ended
    kAbandoned,       // given up on: the scraper left while opening, no answer to the open, silent client, ...
    kFailed,          // refused by the client, an I/O error, the scraper reset
};

struct RelayCloseReason {
    RelayEnd end = RelayEnd::kFailed;
    std::string detail;  // the text of the log line's reason=
};

// False for the expected ends (kDone, kClosedByClient, kForwardEnded).
bool relay_end_logged(RelayEnd end);

struct RelayMove;  // one entry of the transition table

class RelayState {
public:
    RelayPhase phase() const { return phase_; }
    bool opening() const;
    bool closed() const { return phase_ == RelayPhase::kClosed; }
    // The socket is read from the open until the scraper's EOF (a client close does not stop it).
    bool reads_socket() const;
    // The client's EOF or close came (channel read errors are expected from then on).
    bool client_ended() const;
    const RelayCloseReason& close_reason() const { return close_reason_; }

    // Transitions; false (and no change) when the move is impossible in the current phase.
    bool channel_opened();
    bool scraper_eof();  // the socket's EOF was read; the caller passes it on to the client at once
    bool client_eof();
    bool client_close();
    bool socket_shut_down();
    // Ends the relay; false when it had ended already (the first reason stays).
    bool close(RelayEnd end, std::string detail);

    // down_pending: channel data the socket has not taken yet (the client's EOF waits behind it).
    RelayStep next_step(bool down_pending) const;

private:
    template <std::size_t N>
    bool take(const RelayMove (&moves)[N]);  // the event's row of the transition table (relay_state.cpp)

    RelayPhase phase_ = RelayPhase::kOpening;
    RelayCloseReason close_reason_;
};

}  // namespace tunneld
