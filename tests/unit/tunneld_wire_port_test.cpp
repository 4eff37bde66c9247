#include "forward/wire_port.hpp"

#include <catch2/catch.hpp>

#include <cstring>

using tunneld::port_after_pointer;

namespace {
// The shape libssh 0.10 gives a global request inside its message object: other members first, then
// {int type; uint8_t want_reply; char* bind_address; uint16_t bind_port;} with the uint32 written over
// bind_port and the padding after it.
struct FakeMessage {
    void* session;
    int type;
    char other_members[40];
    int request_type;
    unsigned char want_reply;
    char* bind_address;
    std::uint16_t bind_port;
};

FakeMessage message_with(char* address, std::uint32_t wire_port) {
    FakeMessage m{};
    m.bind_address = address;
    std::memcpy(&m.bind_port, &wire_port, sizeof wire_port);  // what ssh_buffer_unpack("d") does
    return m;
}
}  // namespace

TEST_CASE("the port as sent is read back whole, past libssh's 16-bit field", "[wire_port]") {
    char address[] = "web1";
    for (std::uint32_t sent : {0u, 80u, 20001u, 65535u, 65536u, 83848u, 0x80000000u, 0xffffffffu}) {
        CAPTURE(sent);
        FakeMessage m = message_with(address, sent);
        auto port = port_after_pointer(&m, sizeof m, address, static_cast<std::uint16_t>(sent & 0xffff));
        REQUIRE(port);
        CHECK(*port == sent);
    }
}

TEST_CASE("nothing is claimed when the layout is not the expected one", "[wire_port]") {
    char address[] = "web1";
    char other[] = "x";
    FakeMessage m = message_with(address, 20001);
    CHECK_FALSE(port_after_pointer(&m, sizeof m, other, 20001));    // pointer not found
    CHECK_FALSE(port_after_pointer(&m, sizeof m, address, 20002));  // low half disagrees with libssh
    CHECK_FALSE(port_after_pointer(&m, offsetof(FakeMessage, bind_port), address, 20001));  // object too short
    CHECK_FALSE(port_after_pointer(nullptr, 0, address, 20001));
    CHECK_FALSE(port_after_pointer(&m, sizeof m, nullptr, 20001));
}
