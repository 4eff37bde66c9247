// Enrolment by join token (`tunnelctl invite`): checking a token and binding the presenting key to the token's
// target, in one registry write transaction, and the per-source limit on token attempts. Pure logic: no libssh.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "monitoring_proxy/registry.hpp"

namespace tunneld {

enum class EnrolResult {
    kEnrolled,
    kMalformed,    // not NAME.SECRET
    kUnknownName,  // no invitation (or no declared target) of that name
    kWrongSecret,
    kRevoked,      // tunnelctl invite rm
    kExpired,
    kReplayed,     // the key that used it presents it again (its binding was removed since)
    kSpent,        // every use taken, and another key presents it
};

// The log and counter reason of a result ("malformed", "unknown_name", "wrong_token", ...).
const char* enrol_reason(EnrolResult result);

struct Enrolment {
    EnrolResult result = EnrolResult::kMalformed;
    std::string target;           // the name the token claims (sanitised: only when it is a valid name)
    std::uint16_t uses_left = 0;  // after this use
};

// Checks `token` and, if it is good, binds `fingerprint` to its target and takes one use, all in one write
// transaction (LMDB serialises writers, so two concurrent uses of the last use bind exactly one key). Checks in
// this order: form, name, secret, revoked, expiry, replay, uses; nothing past a wrong secret is looked at. One key
// takes at most one use: a replay is refused even while uses are left.
Enrolment consume_invite(monitoring_proxy::registry::Registry& registry, std::string_view token,
                         const std::string& fingerprint, std::int64_t now_unix);

// Whether any invitation can still be used (tunneld offers the token prompt to unknown keys only then).
bool invitations_open(monitoring_proxy::registry::Registry& registry, std::int64_t now_unix);

// Token attempts per source address: a bucket of `burst` attempts, one more every `refill`. At most
// `max_sources` addresses are remembered; beyond that the longest-idle one is forgotten.
class AttemptLimiter {
public:
    using Clock = std::chrono::steady_clock;
    AttemptLimiter(unsigned burst, Clock::duration refill, std::size_t max_sources);
    // Takes one attempt for `source`; false when its bucket is empty.
    bool take(const std::string& source, Clock::time_point now);

private:
    struct Bucket {
        double tokens = 0;
        Clock::time_point updated;
    };
    unsigned burst_;
    Clock::duration refill_;
    std::size_t max_sources_;
    std::map<std::string, Bucket> buckets_;
};

}  // namespace tunneld
