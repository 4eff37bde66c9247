#include "relay/relay_state.hpp"

namespace tunneld {

const char* relay_phase_name(RelayPhase phase) {
    switch (phase) {
        case RelayPhase::kOpening:
            return "opening";
        case RelayPhase::kStreaming:
            return "streaming";
        case RelayPhase::kScraperHalfClosed:
            return "scraper_half_closed";
        case RelayPhase::kClientHalfClosed:
            return "client_half_closed";
        case RelayPhase::kDraining:
            return "draining";
        case RelayPhase::kClosed:
            return "closed";
    }
    return "unknown";
}

void RelayState::settle() {
    // Opening and closed are left only by channel_opened() and never, respectively. A client end that arrives
    // before the open is accepted (a hostile client can send one) is kept and takes effect once it is.
    if (phase_ == RelayPhase::kOpening || phase_ == RelayPhase::kClosed) return;
    if (client_closed_ || (scraper_eof_ && client_eof_))
        phase_ = RelayPhase::kDraining;
    else if (scraper_eof_)
        phase_ = RelayPhase::kScraperHalfClosed;
    else if (client_eof_)
        phase_ = RelayPhase::kClientHalfClosed;
    else
        phase_ = RelayPhase::kStreaming;
}

void RelayState::channel_opened() {
    if (phase_ != RelayPhase::kOpening) return;
    phase_ = RelayPhase::kStreaming;
    settle();
}

void RelayState::scraper_fin() {
    scraper_fin_ = true;
}

void RelayState::scraper_eof() {
    if (closed()) return;
    scraper_eof_ = true;
    settle();
}

void RelayState::client_eof() {
    if (closed()) return;
    client_eof_ = true;
    settle();
}

void RelayState::client_close() {
    if (closed()) return;
    client_closed_ = true;
    client_eof_ = true;
    settle();
}

bool RelayState::close(std::string why) {
    if (closed()) return false;
    phase_ = RelayPhase::kClosed;
    close_reason_ = std::move(why);
    return true;
}

RelayStep RelayState::next_step(bool up_pending, bool down_pending) const {
    if (opening() || closed()) return RelayStep::kNone;
    if (scraper_eof_ && !eof_sent_ && !up_pending) return RelayStep::kSendChannelEof;
    if (client_eof_ && !socket_shut_ && !down_pending) return RelayStep::kShutdownSocket;
    if (client_closed_ && !down_pending) return RelayStep::kCloseByClient;
    if (eof_sent_ && socket_shut_) return RelayStep::kCloseDone;
    return RelayStep::kNone;
}

}  // namespace tunneld
