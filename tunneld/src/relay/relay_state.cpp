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

bool RelayState::move(RelayPhase to) {
    phase_ = to;
    return true;
}

bool RelayState::channel_opened() {
    switch (phase_) {
        case P::kOpening:
            return move(P::kStreaming);
        case P::kOpeningClientEof:
            return move(P::kClientEof);
        case P::kOpeningClientClosed:
            return move(P::kClientClosed);
        default:
            return false;
    }
}

bool RelayState::scraper_eof() {
    switch (phase_) {
        case P::kStreaming:
            return move(P::kScraperEnded);
        case P::kClientEof:
        case P::kClientClosed:
            return move(P::kDraining);
        case P::kClientEnded:
        case P::kClientGone:
            return move(P::kDone);
        default:  // opening: the socket is not read yet; scraper side ended: it is read no more
            return false;
    }
}

bool RelayState::client_eof() {
    switch (phase_) {
        case P::kOpening:
            return move(P::kOpeningClientEof);
        case P::kStreaming:
            return move(P::kClientEof);
        case P::kScraperEnded:
            return move(P::kDraining);
        default:  // a second EOF, or one after the close: nothing new
            return false;
    }
}

bool RelayState::client_close() {
    switch (phase_) {
        case P::kOpening:
        case P::kOpeningClientEof:
            return move(P::kOpeningClientClosed);
        case P::kStreaming:
        case P::kClientEof:
            return move(P::kClientClosed);
        case P::kClientEnded:
            return move(P::kClientGone);
        case P::kScraperEnded:
            return move(P::kDraining);
        default:  // draining or done: what is left to do is the same closed or not; or closed before
            return false;
    }
}

bool RelayState::socket_shut_down() {
    switch (phase_) {
        case P::kClientEof:
            return move(P::kClientEnded);
        case P::kClientClosed:
            return move(P::kClientGone);
        case P::kDraining:
            return move(P::kDone);
        default:  // only next_step's kShutdownSocket leads here
            return false;
    }
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
