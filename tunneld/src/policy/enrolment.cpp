#include "policy/enrolment.hpp"

#include <algorithm>

#include "monitoring_proxy/invite_token.hpp"

namespace tunneld {

namespace reg = monitoring_proxy::registry;

const char* enrol_reason(EnrolResult result) {
    switch (result) {
        case EnrolResult::kEnrolled: return "enrolled";
        case EnrolResult::kMalformed: return "malformed";
        case EnrolResult::kUnknownName: return "unknown_name";
        case EnrolResult::kWrongSecret: return "wrong_token";
        case EnrolResult::kRevoked: return "revoked";
        case EnrolResult::kExpired: return "expired";
        case EnrolResult::kReplayed: return "replayed";
        case EnrolResult::kSpent: return "spent";
    }
    return "unknown";
}

Enrolment consume_invite(reg::Registry& registry, std::string_view token, const std::string& fingerprint,
                         std::int64_t now_unix) {
    Enrolment out;
    auto parsed = reg::parse_invite_token(token);
    if (!parsed) return out;
    out.target = parsed->name;
    registry.update_declared([&](reg::DeclaredTxn& txn) {
        auto invite = txn.get_invite(parsed->name);
        auto target = txn.get(parsed->name);
        if (!invite || !target) {
            out.result = EnrolResult::kUnknownName;
            return;
        }
        if (!reg::invite_secret_matches(*invite, parsed->secret)) {
            out.result = EnrolResult::kWrongSecret;
            return;
        }
        if (invite->revoked) {
            out.result = EnrolResult::kRevoked;
            return;
        }
        if (now_unix >= invite->expires_unix) {
            out.result = EnrolResult::kExpired;
            return;
        }
        if (std::any_of(invite->uses.begin(), invite->uses.end(),
                        [&](const reg::InviteUse& use) { return use.key_fingerprint == fingerprint; })) {
            out.result = EnrolResult::kReplayed;
            return;
        }
        if (invite->uses_left == 0) {
            out.result = EnrolResult::kSpent;
            return;
        }
        target->key_fingerprints.push_back(fingerprint);
        txn.put(parsed->name, *target);
        invite->uses_left -= 1;
        invite->uses.push_back(reg::InviteUse{now_unix, fingerprint});
        txn.put_invite(parsed->name, *invite);
        out.result = EnrolResult::kEnrolled;
        out.uses_left = invite->uses_left;
    });
    return out;
}

bool invitations_open(reg::Registry& registry, std::int64_t now_unix) {
    auto invites = registry.invites();
    return std::any_of(invites.begin(), invites.end(), [&](const auto& entry) {
        return std::string_view(reg::invite_state(entry.second, now_unix)) == "open";
    });
}

AttemptLimiter::AttemptLimiter(unsigned burst, Clock::duration refill, std::size_t max_sources)
    : burst_(burst), refill_(refill), max_sources_(max_sources) {}

bool AttemptLimiter::take(const std::string& source, Clock::time_point now) {
    auto it = buckets_.find(source);
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_sources_) {
            auto idle = std::min_element(buckets_.begin(), buckets_.end(),
                                         [](const auto& a, const auto& b) { return a.second.updated < b.second.updated; });
            buckets_.erase(idle);
        }
        it = buckets_.emplace(source, Bucket{static_cast<double>(burst_), now}).first;
    }
    Bucket& b = it->second;
    const double earned = std::chrono::duration<double>(now - b.updated) / std::chrono::duration<double>(refill_);
    b.tokens = std::min(static_cast<double>(burst_), b.tokens + std::max(0.0, earned));
    b.updated = now;
    if (b.tokens < 1.0) return false;
    b.tokens -= 1.0;
    return true;
}

}  // namespace tunneld
