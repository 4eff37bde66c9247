// The load client's command line: reconnect destinations and the order a reconnecting session tries them in.
#include <catch2/catch.hpp>

#include <iterator>
#include <stdexcept>
#include <vector>

#include "options.hpp"

using loadclient::Destination;
using loadclient::parse_destinations;
using loadclient::parse_options;
using loadclient::reconnect_destination;

TEST_CASE("reconnect destinations are HOST:PORT items separated by commas", "[loadclient]") {
    CHECK(parse_destinations("127.0.0.1:2222") == std::vector<Destination>{{"127.0.0.1", 2222}});
    CHECK(parse_destinations("127.0.0.1:2222,proxy-b:22") ==
          std::vector<Destination>{{"127.0.0.1", 2222}, {"proxy-b", 22}});
    CHECK(parse_destinations("[::1]:22") == std::vector<Destination>{{"::1", 22}});
}

TEST_CASE("a malformed reconnect destination is refused, never guessed", "[loadclient]") {
    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", ":22", "host:0", "host:65536", "host:22x", "::1:22",
                            "[::1:22", "a:1,,b:2", "a:1,"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_destinations(bad), std::invalid_argument);
    }
}

TEST_CASE("a reconnecting session tries the list in turn, starting at its head", "[loadclient]") {
    const std::vector<Destination> list{{"a", 1}, {"b", 2}, {"c", 3}};
    CHECK(reconnect_destination(list, 1).host == "a");
    CHECK(reconnect_destination(list, 2).host == "b");
    CHECK(reconnect_destination(list, 3).host == "c");
    CHECK(reconnect_destination(list, 4).host == "a");
    CHECK(reconnect_destination(list, 0).host == "a");
    const std::vector<Destination> one{{"b", 2}};
    CHECK(reconnect_destination(one, 7).port == 2);
    CHECK_THROWS_AS(reconnect_destination({}, 1), std::invalid_argument);
}

TEST_CASE("the reconnect-to option reaches the options, and without it nothing reconnects", "[loadclient]") {
    const char* with[] = {"loadclient", "--identity", "k", "--forward-spec", "name:t{i}", "--port", "2200",
                          "--reconnect-to", "127.0.0.1:2201,127.0.0.1:2200"};
    const auto o = parse_options(static_cast<int>(std::size(with)), const_cast<char**>(with));
    CHECK(o.port == 2200);
    CHECK(o.reconnect_to == std::vector<Destination>{{"127.0.0.1", 2201}, {"127.0.0.1", 2200}});
    const char* without[] = {"loadclient", "--identity", "k", "--forward-spec", "port:20000"};
    CHECK(parse_options(static_cast<int>(std::size(without)), const_cast<char**>(without)).reconnect_to.empty());
}
