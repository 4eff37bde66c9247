// The life of one relay (a scraped TCP connection <-> a forwarded-tcpip channel) as one state machine, apart
// from any I/O so it can be tested without libssh. The worker reports what happened (the client accepted the
// channel, the scraper's EOF, the client's EOF or close, a failure) and asks next_step() what to do; each step it
// carries out it reports back (channel_eof_sent, socket_shut_down), and close() ends it.
//
//   opening --channel_opened--> streaming --scraper_eof--> scraper_half_closed --client_eof--> draining
//                                        \--client_eof--> client_half_closed --scraper_eof--/
//   client_close (the client closed the channel): draining from any open state.
//   close(why): closed from any state; nothing leaves closed.
//
// "up" is scraper -> host (socket read, channel written), "down" is host -> scraper.
#pragma once

#include <string>

namespace tunneld {

enum class RelayPhase {
    kOpening,            // channel open sent, the client has not accepted it yet
    kStreaming,          // both ways open
    kScraperHalfClosed,  // the scraper sent its EOF: read the socket no more, pass the EOF on to the client
    kClientHalfClosed,   // the client sent its EOF: shut the socket's write side once the data before it is out
    kDraining,           // both ends seen (or the client closed the channel): finish what is buffered, then end
    kClosed,             // ended: the worker frees the socket and the channel between rounds
};

const char* relay_phase_name(RelayPhase phase);

// What the worker should do next to move the relay on.
enum class RelayStep {
    kNone,             // wait for I/O or the peers
    kSendChannelEof,   // pass the scraper's EOF on to the client
    kShutdownSocket,   // pass the client's EOF on to the scraper (shutdown SHUT_WR)
    kCloseByClient,    // the client closed the channel and everything it sent is out: end ("closed by client")
    kCloseDone,        // both EOFs passed on: end ("done")
};

class RelayState {
public:
    RelayPhase phase() const { return phase_; }
    bool opening() const { return phase_ == RelayPhase::kOpening; }
    bool closed() const { return phase_ == RelayPhase::kClosed; }
    // The socket is read from the open until the scraper's EOF (a client close does not stop it: see draining).
    bool reads_socket() const { return !opening() && !closed() && !scraper_eof_; }
    bool scraper_ended() const { return scraper_eof_; }
    bool client_ended() const { return client_eof_; }
    // EPOLLRDHUP seen: the scraper's FIN arrived (unread data may remain before its EOF).
    bool scraper_fin_seen() const { return scraper_fin_; }
    const std::string& close_reason() const { return close_reason_; }

    void channel_opened();
    void scraper_fin();
    void scraper_eof();
    void client_eof();
    void client_close();
    // Ends the relay with `why`; false when it had ended already (the first reason stays).
    bool close(std::string why);

    // up_pending: socket data the channel has not taken yet; down_pending: channel data the socket has not taken.
    RelayStep next_step(bool up_pending, bool down_pending) const;
    void channel_eof_sent() { eof_sent_ = true; }
    void socket_shut_down() { socket_shut_ = true; }

private:
    void settle();  // the phase that the ends seen so far make

    RelayPhase phase_ = RelayPhase::kOpening;
    // The ends seen and passed on: only the transitions above change them, and the phase follows from them.
    bool scraper_fin_ = false;
    bool scraper_eof_ = false;
    bool client_eof_ = false;
    bool client_closed_ = false;
    bool eof_sent_ = false;
    bool socket_shut_ = false;
    std::string close_reason_;
};

}  // namespace tunneld
