// RelayState: the relay's life without libssh — each transition, the steps it asks for, and that closed is final.
#include <catch2/catch.hpp>

#include "relay/relay_state.hpp"

using tunneld::RelayPhase;
using tunneld::RelayState;
using tunneld::RelayStep;

TEST_CASE("a relay opens, streams and ends after both EOFs were passed on", "[relay_state]") {
    RelayState r;
    CHECK(r.phase() == RelayPhase::kOpening);
    CHECK_FALSE(r.reads_socket());
    CHECK(r.next_step(false, false) == RelayStep::kNone);
    r.channel_opened();
    CHECK(r.phase() == RelayPhase::kStreaming);
    CHECK(r.reads_socket());
    r.scraper_eof();
    CHECK(r.phase() == RelayPhase::kScraperHalfClosed);
    CHECK_FALSE(r.reads_socket());
    CHECK(r.next_step(true, false) == RelayStep::kNone);  // socket data still waits for the window
    CHECK(r.next_step(false, false) == RelayStep::kSendChannelEof);
    r.channel_eof_sent();
    CHECK(r.next_step(false, false) == RelayStep::kNone);
    r.client_eof();
    CHECK(r.phase() == RelayPhase::kDraining);
    CHECK(r.next_step(false, true) == RelayStep::kNone);  // channel data still waits for the socket
    CHECK(r.next_step(false, false) == RelayStep::kShutdownSocket);
    r.socket_shut_down();
    CHECK(r.next_step(false, false) == RelayStep::kCloseDone);
    CHECK(r.close("done"));
    CHECK(r.phase() == RelayPhase::kClosed);
    CHECK(r.next_step(false, false) == RelayStep::kNone);
}

TEST_CASE("the client's EOF first half-closes the other way and the socket is still read", "[relay_state]") {
    RelayState r;
    r.channel_opened();
    r.client_eof();
    CHECK(r.phase() == RelayPhase::kClientHalfClosed);
    CHECK(r.reads_socket());
    CHECK(r.next_step(false, false) == RelayStep::kShutdownSocket);
    r.socket_shut_down();
    r.scraper_eof();
    CHECK(r.phase() == RelayPhase::kDraining);
    CHECK(r.next_step(false, false) == RelayStep::kSendChannelEof);
}

TEST_CASE("a channel closed by the client drains to the socket, then ends", "[relay_state]") {
    RelayState r;
    r.channel_opened();
    r.client_close();
    CHECK(r.phase() == RelayPhase::kDraining);
    CHECK(r.client_ended());
    CHECK(r.next_step(false, true) == RelayStep::kNone);
    CHECK(r.next_step(false, false) == RelayStep::kShutdownSocket);
    r.socket_shut_down();
    CHECK(r.next_step(false, false) == RelayStep::kCloseByClient);
}

TEST_CASE("a client end before the open is accepted takes effect once it is", "[relay_state]") {
    RelayState r;
    r.client_eof();
    CHECK(r.phase() == RelayPhase::kOpening);
    CHECK(r.next_step(false, false) == RelayStep::kNone);
    r.channel_opened();
    CHECK(r.phase() == RelayPhase::kClientHalfClosed);
}

TEST_CASE("closed is final and keeps the first reason", "[relay_state]") {
    RelayState r;
    CHECK(r.close("client did not answer the channel open within 10 s"));
    CHECK_FALSE(r.close("session closing"));
    CHECK(r.close_reason() == "client did not answer the channel open within 10 s");
    r.channel_opened();
    r.scraper_eof();
    r.client_close();
    CHECK(r.phase() == RelayPhase::kClosed);
    CHECK_FALSE(r.reads_socket());
    CHECK(std::string(tunneld::relay_phase_name(r.phase())) == "closed");
}

TEST_CASE("the scraper's FIN is remembered apart from its EOF", "[relay_state]") {
    RelayState r;
    r.channel_opened();
    r.scraper_fin();
    CHECK(r.scraper_fin_seen());
    CHECK_FALSE(r.scraper_ended());
    CHECK(r.reads_socket());  // unread data before the EOF is still relayed
}
