#include "relay/relay_state.hpp"

namespace tunneld {

using P = RelayPhase;

const char* relay_phase_name(RelayPhase phase) {
    switch (phase) {
        case P::kOpening:
            return "opening";
        case P::kOpeningClientEof:
            return "opening_client_eof";
        case P::kOpeningClientClosed:
            return "opening_client_closed";
        case P::kStreaming:
            return "streaming";
        case P::kScraperEnded:
            return "scraper_ended";
        case P::kClientEof:
            return "client_eof";
        case P::kClientEnded:
            return "client_ended";
        case P::kDraining:
            return "draining";
        case P::kClientClosed:
            return "client_closed";
        case P::kClientGone:
            return "client_gone";
        case P::kDone:
            return "done";
        case P::kClosed:
            return "closed";
    }
    return "unknown";
}

bool RelayState::opening() const {
    return phase_ == P::kOpening || phase_ == P::kOpeningClientEof || phase_ == P::kOpeningClientClosed;
}

bool RelayState::reads_socket() const {
    switch (phase_) {
        case P::kStreaming:
        case P::kClientEof:
        case P::kClientEnded:
        case P::kClientClosed:
        case P::kClientGone:
            return true;
        default:
            return false;
    }
}

bool RelayState::client_ended() const {
    switch (phase_) {
        case P::kOpening:
        case P::kStreaming:
        case P::kScraperEnded:
        case P::kClosed:
            return false;
        default:
            return true;
    }
}

// The transition table: for each event, the phases it moves and where to. A phase not listed refuses the event.
struct RelayMove {
    RelayPhase from, to;
};

namespace {

using Move = RelayMove;

constexpr Move kOnChannelOpened[] = {
    {P::kOpening, P::kStreaming},
    {P::kOpeningClientEof, P::kClientEof},
    {P::kOpeningClientClosed, P::kClientClosed},
};
// Refused while opening (the socket is not read yet) and once the scraper's end was seen (it is read no more).
constexpr Move kOnScraperEof[] = {
    {P::kStreaming, P::kScraperEnded}, {P::kClientEof, P::kDraining}, {P::kClientClosed, P::kDraining},
    {P::kClientEnded, P::kDone},       {P::kClientGone, P::kDone},
};
// Refused after an EOF or a close: nothing new.
constexpr Move kOnClientEof[] = {
    {P::kOpening, P::kOpeningClientEof},
    {P::kStreaming, P::kClientEof},
    {P::kScraperEnded, P::kDraining},
};
// Refused in draining and done (what is left to do is the same closed or not) and after a close.
constexpr Move kOnClientClose[] = {
    {P::kOpening, P::kOpeningClientClosed}, {P::kOpeningClientEof, P::kOpeningClientClosed},
    {P::kStreaming, P::kClientClosed},      {P::kClientEof, P::kClientClosed},
    {P::kClientEnded, P::kClientGone},      {P::kScraperEnded, P::kDraining},
};
// Only where next_step asks for kShutdownSocket.
constexpr Move kOnSocketShutDown[] = {
    {P::kClientEof, P::kClientEnded},
    {P::kClientClosed, P::kClientGone},
    {P::kDraining, P::kDone},
};

}  // namespace

template <std::size_t N>
bool RelayState::take(const Move (&moves)[N]) {
    for (const Move& m : moves) {
        if (m.from != phase_) continue;
        phase_ = m.to;
        return true;
    }
    return false;
}

bool RelayState::channel_opened() {
    return take(kOnChannelOpened);
}
bool RelayState::scraper_eof() {
    return take(kOnScraperEof);
}
bool RelayState::client_eof() {
    return take(kOnClientEof);
}
bool RelayState::client_close() {
    return take(kOnClientClose);
}
bool RelayState::socket_shut_down() {
    return take(kOnSocketShutDown);
}

bool relay_end_logged(RelayEnd end) {
    switch (end) {
        case RelayEnd::kDone:
        case RelayEnd::kClosedByClient:
        case RelayEnd::kForwardEnded:
            return false;
        case RelayEnd::kAbandoned:
        case RelayEnd::kFailed:
            return true;
    }
    return true;
}

bool RelayState::close(RelayEnd end, std::string detail) {
    if (closed()) return false;
    phase_ = P::kClosed;
    close_reason_ = {end, std::move(detail)};
    return true;
}

RelayStep RelayState::next_step(bool down_pending) const {
    switch (phase_) {
        case P::kClientEof:
        case P::kClientClosed:
        case P::kDraining:
            return down_pending ? RelayStep::kNone : RelayStep::kShutdownSocket;
        case P::kClientGone:
            return down_pending ? RelayStep::kNone : RelayStep::kCloseByClient;
        case P::kDone:
            return RelayStep::kCloseDone;
        default:
            return RelayStep::kNone;
    }
}

}  // namespace tunneld
