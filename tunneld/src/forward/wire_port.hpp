// The port field of a tcpip-forward / cancel-tcpip-forward request as the client sent it (a uint32).
//
// libssh 0.10 unpacks that uint32 into a uint16_t field (messages.c, ssh_packet_global_request: "sd" into
// global_request.bind_port), so ssh_message_global_request_port() returns only the low 16 bits: 83848 reads as
// 18312 and 2^31 as 0, i.e. as a different, valid request. The high half is written into the padding that
// follows the field, right behind the bind_address pointer the message also holds. port_after_pointer() finds
// that pointer in the message object and reads the whole uint32 behind it; the low half must equal what libssh
// reports, or nothing is claimed. If libssh ever widens the field, the same read stays right.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tunneld {

// Scans `object` (size bytes) at pointer alignment for the value `pointer`, then reads the uint32 stored right
// after it. Returns it when its low 16 bits are `low16`, else nullopt.
std::optional<std::uint32_t> port_after_pointer(const void* object, std::size_t size, const void* pointer,
                                                std::uint16_t low16) noexcept;

}  // namespace tunneld
