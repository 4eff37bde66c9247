// RelayState: the relay's life without libssh — every transition and every refused move (one section each, from
// every phase), the steps each phase asks for, and that closed is final.
#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "relay/relay_state.hpp"

using tunneld::RelayPhase;
using tunneld::RelayState;
using tunneld::RelayStep;
using P = RelayPhase;

namespace {

const std::vector<P> kAllPhases = {P::kOpening,      P::kOpeningClientEof, P::kOpeningClientClosed, P::kStreaming,
                                   P::kScraperEnded, P::kClientEof,        P::kClientEnded,         P::kDraining,
                                   P::kClientClosed, P::kClientGone,       P::kDone,                P::kClosed};

enum class Event { kOpened, kScraperEof, kClientEof, kClientClose, kShutDown, kClose };

bool apply(RelayState& r, Event e) {
    switch (e) {
        case Event::kOpened:
            return r.channel_opened();
        case Event::kScraperEof:
            return r.scraper_eof();
        case Event::kClientEof:
            return r.client_eof();
        case Event::kClientClose:
            return r.client_close();
        case Event::kShutDown:
            return r.socket_shut_down();
        case Event::kClose:
            return r.close(tunneld::RelayEnd::kFailed, "test");
    }
    return false;
}

// A relay in `phase`, reached through the events that lead there in the worker.
RelayState reach(P phase) {
    using E = Event;
    static const std::map<P, std::vector<Event>> kPaths = {
        {P::kOpening, {}},
        {P::kOpeningClientEof, {E::kClientEof}},
        {P::kOpeningClientClosed, {E::kClientClose}},
        {P::kStreaming, {E::kOpened}},
        {P::kScraperEnded, {E::kOpened, E::kScraperEof}},
        {P::kClientEof, {E::kOpened, E::kClientEof}},
        {P::kClientEnded, {E::kOpened, E::kClientEof, E::kShutDown}},
        {P::kDraining, {E::kOpened, E::kScraperEof, E::kClientEof}},
        {P::kClientClosed, {E::kOpened, E::kClientClose}},
        {P::kClientGone, {E::kOpened, E::kClientEof, E::kShutDown, E::kClientClose}},
        {P::kDone, {E::kOpened, E::kScraperEof, E::kClientEof, E::kShutDown}},
        {P::kClosed, {E::kClose}},
    };
    RelayState r;
    for (Event e : kPaths.at(phase)) REQUIRE(apply(r, e));
    REQUIRE(r.phase() == phase);
    return r;
}

// For one event: the phase it moves each phase to; every phase not listed must refuse it and stay.
void check_event(const std::function<bool(RelayState&)>& event, const std::map<P, P>& moves) {
    for (P from : kAllPhases) {
        auto it = moves.find(from);
        if (it != moves.end()) {
            DYNAMIC_SECTION("moves " << tunneld::relay_phase_name(from) << " to "
                                     << tunneld::relay_phase_name(it->second)) {
                RelayState r = reach(from);
                CHECK(event(r));
                CHECK(r.phase() == it->second);
            }
        } else {
            DYNAMIC_SECTION("refused in " << tunneld::relay_phase_name(from)) {
                RelayState r = reach(from);
                CHECK_FALSE(event(r));
                CHECK(r.phase() == from);
            }
        }
    }
}

}  // namespace

TEST_CASE("channel_opened", "[relay_state]") {
    check_event([](RelayState& r) { return r.channel_opened(); },
                {{P::kOpening, P::kStreaming},
                 {P::kOpeningClientEof, P::kClientEof},
                 {P::kOpeningClientClosed, P::kClientClosed}});
}

TEST_CASE("scraper_eof", "[relay_state]") {
    check_event([](RelayState& r) { return r.scraper_eof(); },
                {{P::kStreaming, P::kScraperEnded},
                 {P::kClientEof, P::kDraining},
                 {P::kClientClosed, P::kDraining},
                 {P::kClientEnded, P::kDone},
                 {P::kClientGone, P::kDone}});
}

TEST_CASE("client_eof", "[relay_state]") {
    check_event([](RelayState& r) { return r.client_eof(); },
                {{P::kOpening, P::kOpeningClientEof},
                 {P::kStreaming, P::kClientEof},
                 {P::kScraperEnded, P::kDraining}});
}

TEST_CASE("client_close", "[relay_state]") {
    check_event([](RelayState& r) { return r.client_close(); },
                {{P::kOpening, P::kOpeningClientClosed},
                 {P::kOpeningClientEof, P::kOpeningClientClosed},
                 {P::kStreaming, P::kClientClosed},
                 {P::kClientEof, P::kClientClosed},
                 {P::kClientEnded, P::kClientGone},
                 {P::kScraperEnded, P::kDraining}});
}

TEST_CASE("socket_shut_down", "[relay_state]") {
    check_event([](RelayState& r) { return r.socket_shut_down(); },
                {{P::kClientEof, P::kClientEnded}, {P::kClientClosed, P::kClientGone}, {P::kDraining, P::kDone}});
}

TEST_CASE("close", "[relay_state]") {
    std::map<P, P> moves;
    for (P p : kAllPhases)
        if (p != P::kClosed) moves[p] = P::kClosed;
    check_event([](RelayState& r) { return r.close(tunneld::RelayEnd::kFailed, "why"); }, moves);
}

TEST_CASE("closed keeps the first reason", "[relay_state]") {
    RelayState r;
    CHECK(r.close(tunneld::RelayEnd::kAbandoned, "client did not answer the channel open within 10 s"));
    CHECK_FALSE(r.close(tunneld::RelayEnd::kFailed, "session closing"));
    CHECK(r.close_reason().end == tunneld::RelayEnd::kAbandoned);
    CHECK(r.close_reason().detail == "client did not answer the channel open within 10 s");
}

TEST_CASE("only the expected ends go unlogged", "[relay_state]") {
    using tunneld::RelayEnd;
    CHECK_FALSE(tunneld::relay_end_logged(RelayEnd::kDone));
    CHECK_FALSE(tunneld::relay_end_logged(RelayEnd::kClosedByClient));
    CHECK_FALSE(tunneld::relay_end_logged(RelayEnd::kForwardEnded));
    CHECK(tunneld::relay_end_logged(RelayEnd::kAbandoned));
    CHECK(tunneld::relay_end_logged(RelayEnd::kFailed));
}

TEST_CASE("what each phase reads, has seen and asks for", "[relay_state]") {
    struct Expect {
        bool opening, reads_socket, client_ended;
        RelayStep drained, down_pending;  // next_step(false), next_step(true)
    };
    const RelayStep N = RelayStep::kNone, S = RelayStep::kShutdownSocket;
    const std::map<P, Expect> expect = {
        {P::kOpening, {true, false, false, N, N}},
        {P::kOpeningClientEof, {true, false, true, N, N}},
        {P::kOpeningClientClosed, {true, false, true, N, N}},
        {P::kStreaming, {false, true, false, N, N}},
        {P::kScraperEnded, {false, false, false, N, N}},
        {P::kClientEof, {false, true, true, S, N}},
        {P::kClientEnded, {false, true, true, N, N}},
        {P::kDraining, {false, false, true, S, N}},
        {P::kClientClosed, {false, true, true, S, N}},
        {P::kClientGone, {false, true, true, RelayStep::kCloseByClient, N}},
        {P::kDone, {false, false, true, RelayStep::kCloseDone, RelayStep::kCloseDone}},
        {P::kClosed, {false, false, false, N, N}},
    };
    REQUIRE(expect.size() == kAllPhases.size());
    for (P p : kAllPhases) {
        DYNAMIC_SECTION(tunneld::relay_phase_name(p)) {
            RelayState r = reach(p);
            const Expect& e = expect.at(p);
            CHECK(r.opening() == e.opening);
            CHECK(r.closed() == (p == P::kClosed));
            CHECK(r.reads_socket() == e.reads_socket);
            CHECK(r.client_ended() == e.client_ended);
            CHECK(r.next_step(false) == e.drained);
            CHECK(r.next_step(true) == e.down_pending);
        }
    }
}

TEST_CASE("a relay streams, half-closes either way and ends done", "[relay_state]") {
    for (bool scraper_first : {true, false}) {
        DYNAMIC_SECTION((scraper_first ? "scraper first" : "client first")) {
            RelayState r;
            REQUIRE(r.channel_opened());
            if (scraper_first) {
                REQUIRE(r.scraper_eof());
                REQUIRE(r.client_eof());
                CHECK(r.next_step(false) == RelayStep::kShutdownSocket);
                REQUIRE(r.socket_shut_down());
            } else {
                REQUIRE(r.client_eof());
                REQUIRE(r.socket_shut_down());
                CHECK(r.reads_socket());  // half-closed by the client: the scraper is still read
                REQUIRE(r.scraper_eof());
            }
            CHECK(r.next_step(false) == RelayStep::kCloseDone);
            CHECK(r.close(tunneld::RelayEnd::kDone, "done"));
            CHECK(r.phase() == P::kClosed);
        }
    }
}

TEST_CASE("phase names are distinct", "[relay_state]") {
    std::map<std::string, P> seen;
    for (P p : kAllPhases) CHECK(seen.emplace(tunneld::relay_phase_name(p), p).second);
}
