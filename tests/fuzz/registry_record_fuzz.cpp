// Registry values come from a file other processes write: every decoder must reject garbage without crashing or
// over-reading, and whatever decodes must re-encode to the same bytes.
#include "monitoring_proxy/codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace monitoring_proxy::registry;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    try {
        TargetRecord t = decode_target(bytes);
        if (encode(t) != bytes) std::abort();
    } catch (const DecodeError&) {
    }
    try {
        (void)target_allows_path(bytes, "/metrics");
    } catch (const DecodeError&) {
    }
    try {
        TunnelRecord r = decode_tunnel(bytes);
        if (encode(r) != bytes || tunnel_port(bytes) != r.port) std::abort();
    } catch (const DecodeError&) {
    }
    try {
        InstanceRecord i = decode_instance(bytes);
        if (encode(i) != bytes) std::abort();
    } catch (const DecodeError&) {
    }
    return 0;
}
