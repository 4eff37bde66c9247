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
    // The hot path's tunnel_endpoint and the full decoder accept exactly the same values and agree on them;
    // current-version records round-trip (version 1 ones decode, and are written back as the current version).
    bool full = false, endpoint_ok = false;
    TunnelRecord r;
    TunnelEndpoint endpoint;
    try {
        r = decode_tunnel(bytes);
        full = true;
    } catch (const DecodeError&) {
    }
    try {
        endpoint = tunnel_endpoint(bytes);
        endpoint_ok = true;
    } catch (const DecodeError&) {
    }
    if (full != endpoint_ok) std::abort();
    if (full && (endpoint.port != r.port || endpoint.address != r.address)) std::abort();
    if (full && static_cast<std::uint8_t>(bytes[0]) == kTunnelRecordVersion && encode(r) != bytes) std::abort();
    // A counter key is either one of the vocabulary's, exactly as tunneld encodes it, or refused.
    if (auto key = decode_counter_key(bytes)) {
        if (encode_counter_key(key->spec->id, key->label_value) != bytes) std::abort();
    }
    try {
        InstanceRecord i = decode_instance(bytes);
        if (encode(i) != bytes) std::abort();
    } catch (const DecodeError&) {
    }
    try {
        InviteRecord i = decode_invite(bytes);
        if (encode(i) != bytes) std::abort();
    } catch (const DecodeError&) {
    }
    return 0;
}
