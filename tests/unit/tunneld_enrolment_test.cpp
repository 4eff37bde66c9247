#include "policy/enrolment.hpp"

#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/invite_token.hpp"
#include "temp_registry.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

using namespace monitoring_proxy::registry;
using tunneld::AttemptLimiter;
using tunneld::consume_invite;
using tunneld::EnrolResult;

namespace {

constexpr std::int64_t kNow = 1800000000;
const std::string kKeyA = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const std::string kKeyB = "SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

OpenOptions options_for(const TempDir& d) {
    OpenOptions o;
    o.dir = d.sub("reg");
    o.group = "root";
    return o;
}

// Declares `name` with an invitation; returns its token.
std::string invite(Registry& reg, const std::string& name, std::uint16_t uses = 1, std::int64_t ttl = 3600) {
    InviteToken token = new_invite_token(name);
    InviteRecord r;
    r.secret_sha256 = invite_secret_hash(token.secret);
    r.created_unix = kNow;
    r.expires_unix = kNow + ttl;
    r.uses_left = uses;
    reg.update_declared([&](DeclaredTxn& txn) {
        txn.put(name, TargetRecord{});
        txn.put_invite(name, r);
    });
    return token.text();
}

}  // namespace

TEST_CASE("join tokens: 256 random bits, NAME.SECRET, and nothing else parses") {
    InviteToken a = new_invite_token("web1.example"), b = new_invite_token("web1.example");
    CHECK(a.secret.size() == kInviteSecretLength);
    CHECK(a.secret != b.secret);
    auto parsed = parse_invite_token(a.text() + "\n");
    REQUIRE(parsed);
    CHECK(parsed->name == "web1.example");  // the last dot separates: names may contain dots
    CHECK(parsed->secret == a.secret);
    CHECK(invite_secret_hash(a.secret).size() == 32);
    for (std::string bad : {std::string(""), std::string("web1"), "web1." + a.secret.substr(1), "web1." + a.secret + "x",
                            "Web1." + a.secret, "." + a.secret, "web1." + a.secret.substr(0, 42) + "=",
                            "web1." + a.secret.substr(0, 42) + ".", " web1." + a.secret,
                            std::string(64, 'a') + "." + a.secret})
        CHECK_FALSE(parse_invite_token(bad));
}

TEST_CASE("invite records round-trip and garbage is a DecodeError") {
    InviteRecord r;
    r.secret_sha256 = invite_secret_hash("x");
    r.created_unix = 1, r.expires_unix = 2, r.uses_left = 3, r.revoked = true;
    r.uses = {{5, kKeyA}, {6, kKeyB}};
    const std::string bytes = encode(r);
    CHECK(decode_invite(bytes) == r);
    for (std::size_t n = 0; n < bytes.size(); ++n) CHECK_THROWS_AS(decode_invite(bytes.substr(0, n)), DecodeError);
    CHECK_THROWS_AS(decode_invite(bytes + "x"), DecodeError);
    r.secret_sha256 = "short";
    CHECK_THROWS_AS(decode_invite(encode(r)), DecodeError);
}

TEST_CASE("a good token binds the key and takes one use, in one transaction") {
    TempDir d;
    Registry reg = Registry::open(options_for(d));
    const std::string token = invite(reg, "web1", 2);
    auto first = consume_invite(reg, token, kKeyA, kNow);
    CHECK(first.result == EnrolResult::kEnrolled);
    CHECK(first.uses_left == 1);
    CHECK(reg.targets_for_key(kKeyA) == std::vector<std::string>{"web1"});
    CHECK(consume_invite(reg, token, kKeyB, kNow + 1).result == EnrolResult::kEnrolled);
    auto third = consume_invite(reg, token, "SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", kNow + 2);
    CHECK(third.result == EnrolResult::kSpent);
    CHECK(reg.get_target("web1")->key_fingerprints == std::vector<std::string>{kKeyA, kKeyB});
    auto stored = reg.invites().at("web1");
    CHECK(stored.uses_left == 0);
    CHECK(stored.uses == std::vector<InviteUse>{{kNow, kKeyA}, {kNow + 1, kKeyB}});
}

TEST_CASE("a key presenting its token again is a replay, distinct from another key reusing a spent one") {
    TempDir d;
    Registry reg = Registry::open(options_for(d));
    const std::string token = invite(reg, "web1", 3);
    REQUIRE(consume_invite(reg, token, kKeyA, kNow).result == EnrolResult::kEnrolled);
    // The operator unbinds the key; it presents the token again: refused although two uses are left.
    reg.update_declared([&](DeclaredTxn& txn) {
        auto t = *txn.get("web1");
        t.key_fingerprints.clear();
        txn.put("web1", t);
    });
    CHECK(consume_invite(reg, token, kKeyA, kNow + 1).result == EnrolResult::kReplayed);
    CHECK(reg.invites().at("web1").uses_left == 2);
    CHECK(reg.targets_for_key(kKeyA).empty());
    REQUIRE(consume_invite(reg, token, kKeyB, kNow + 2).result == EnrolResult::kEnrolled);
    REQUIRE(consume_invite(reg, token, "SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", kNow + 3).result ==
            EnrolResult::kEnrolled);
    CHECK(consume_invite(reg, token, "SHA256:DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD", kNow + 4).result ==
          EnrolResult::kSpent);
    CHECK(consume_invite(reg, token, kKeyB, kNow + 5).result == EnrolResult::kReplayed);  // replay wins over spent
    CHECK(std::string(tunneld::enrol_reason(EnrolResult::kReplayed)) == "replayed");
}

TEST_CASE("refusals: each has its reason, and none changes the registry") {
    TempDir d;
    Registry reg = Registry::open(options_for(d));
    const std::string token = invite(reg, "web1");
    const std::string other = invite(reg, "web2");
    const std::string secret_of_other = other.substr(other.find('.') + 1);
    auto reason = [&](const std::string& t, std::int64_t now = kNow) {
        return std::string(tunneld::enrol_reason(consume_invite(reg, t, kKeyA, now).result));
    };
    CHECK(reason("garbage") == "malformed");
    CHECK(reason("nosuch." + secret_of_other) == "unknown_name");
    CHECK(reason("web1." + secret_of_other) == "wrong_token");
    CHECK(reason(token, kNow + 3600) == "expired");
    reg.update_declared([&](DeclaredTxn& txn) {
        auto r = *txn.get_invite("web2");
        r.revoked = true;
        txn.put_invite("web2", r);
    });
    CHECK(reason(other) == "revoked");
    reg.update_declared([&](DeclaredTxn& txn) { txn.remove("web1"); });
    CHECK(reason(token) == "unknown_name");  // the target was removed after the invitation
    CHECK(reg.targets_for_key(kKeyA).empty());
    CHECK(reg.invites().at("web1").uses_left == 1);
}

TEST_CASE("invitations_open ignores spent, revoked and expired invitations") {
    TempDir d;
    Registry reg = Registry::open(options_for(d));
    CHECK_FALSE(tunneld::invitations_open(reg, kNow));
    const std::string token = invite(reg, "web1");
    CHECK(tunneld::invitations_open(reg, kNow));
    CHECK_FALSE(tunneld::invitations_open(reg, kNow + 3600));
    consume_invite(reg, token, kKeyA, kNow);
    CHECK_FALSE(tunneld::invitations_open(reg, kNow));
}

TEST_CASE("a single-use token used by several processes at once binds exactly one key") {
    TempDir d;
    std::string token;
    {
        Registry reg = Registry::open(options_for(d));
        token = invite(reg, "web1");
    }
    int go[2];
    REQUIRE(::pipe(go) == 0);
    std::vector<pid_t> children;
    for (char c : std::string("ABCDEF")) {
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(go[1]);
            Registry reg = Registry::open(options_for(d));
            char byte;
            (void)::read(go[0], &byte, 1);  // every child waits here until the pipe closes
            auto r = consume_invite(reg, token, "SHA256:" + std::string(43, c), kNow);
            ::_exit(r.result == EnrolResult::kEnrolled ? 0 : r.result == EnrolResult::kSpent ? 1 : 2);
        }
        children.push_back(pid);
    }
    ::close(go[0]);
    ::close(go[1]);
    int enrolled = 0, spent = 0;
    for (pid_t pid : children) {
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        enrolled += WEXITSTATUS(status) == 0;
        spent += WEXITSTATUS(status) == 1;
    }
    CHECK(enrolled == 1);
    CHECK(spent == 5);
    Registry reg = Registry::open(options_for(d));
    CHECK(reg.get_target("web1")->key_fingerprints.size() == 1);
    CHECK(reg.invites().at("web1").uses.size() == 1);
}

TEST_CASE("token attempts per address: a burst, then one per refill period; idle addresses are forgotten") {
    using namespace std::chrono_literals;
    AttemptLimiter limiter(3, 10s, 2);
    const auto t0 = AttemptLimiter::Clock::time_point{} + 1h;
    for (int i = 0; i < 3; ++i) CHECK(limiter.take("10.0.0.1", t0));
    CHECK_FALSE(limiter.take("10.0.0.1", t0 + 9s));
    CHECK(limiter.take("10.0.0.1", t0 + 10s));
    CHECK_FALSE(limiter.take("10.0.0.1", t0 + 11s));
    CHECK(limiter.take("10.0.0.2", t0 + 12s));  // another address has its own bucket
    CHECK(limiter.take("10.0.0.3", t0 + 13s));  // a third forgets the longest idle (10.0.0.1)...
    for (int i = 0; i < 3; ++i) CHECK(limiter.take("10.0.0.1", t0 + 14s));  // ...which starts afresh
}
