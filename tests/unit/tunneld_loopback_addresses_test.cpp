#include "forward/loopback_addresses.hpp"

#include <catch2/catch.hpp>

#include <set>

using tunneld::LoopbackAddresses;

TEST_CASE("every forward gets a host address of its own, outside 127.0.0.0/16", "[loopback]") {
    LoopbackAddresses pool(LoopbackAddresses::kFirst);
    std::set<std::uint32_t> given;
    auto in_use = [&](std::uint32_t a) { return given.count(a) != 0; };
    for (int i = 0; i < 1000; ++i) {
        auto a = pool.next(in_use);
        REQUIRE(a);
        CHECK((*a >> 16) != 0x7f00);  // never 127.0.x.x: 127.0.0.1 holds the fixed-port listeners
        CHECK((*a & 0xff) != 0);
        CHECK((*a & 0xff) != 255);
        CHECK(given.insert(*a).second);
    }
}

TEST_CASE("the walk wraps at the end of the pool and skips addresses still in use", "[loopback]") {
    LoopbackAddresses pool(LoopbackAddresses::kLast);
    CHECK(*pool.next([](std::uint32_t) { return false; }) == LoopbackAddresses::kLast);
    // Next comes kFirst again (127.1.0.1); say it is still held by a live forward.
    auto a = pool.next([](std::uint32_t x) { return x == LoopbackAddresses::kFirst; });
    CHECK(*a == LoopbackAddresses::kFirst + 1);
}

TEST_CASE("any start value lands inside the pool", "[loopback]") {
    for (std::uint32_t start : {0u, 1u, 0x7f000001u, 0xffffffffu, LoopbackAddresses::kFirst - 1}) {
        LoopbackAddresses pool(start);
        auto a = pool.next([](std::uint32_t) { return false; });
        REQUIRE(a);
        CHECK(LoopbackAddresses::usable(*a));
    }
}

TEST_CASE("an exhausted pool says so instead of reusing a live address", "[loopback]") {
    LoopbackAddresses pool(LoopbackAddresses::kFirst);
    CHECK_FALSE(pool.next([](std::uint32_t) { return true; }));
}
