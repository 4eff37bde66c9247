#include <catch2/catch.hpp>

#include "options.hpp"
#include "policy/preauth_admission.hpp"

using namespace tunneld;

namespace {

// A draw that never triggers random early drop, or always does.
PreauthAdmission never_drop(PreauthLimits limits = {}) {
    return PreauthAdmission(limits, [] { return 0.999999; });
}

}  // namespace

TEST_CASE("one address gets its per-source quota, others keep theirs") {
    auto a = never_drop();
    for (int i = 0; i < 10; ++i) REQUIRE(a.admit("127.0.0.2") == Admission::kAdmitted);
    CHECK(a.admit("127.0.0.2") == Admission::kPerSource);
    CHECK(a.admit("127.0.0.3") == Admission::kAdmitted);
    CHECK(a.from("127.0.0.2") == 10);
    CHECK(a.total() == 11);
    CHECK(std::string(admission_reason(Admission::kPerSource)) == "per_source");
}

TEST_CASE("a released slot can be taken again; releases of unknown sources change nothing") {
    auto a = never_drop();
    for (int i = 0; i < 10; ++i) a.admit("10.1.1.1");
    a.release("10.1.1.1");
    CHECK(a.from("10.1.1.1") == 9);
    CHECK(a.admit("10.1.1.1") == Admission::kAdmitted);
    a.release("192.0.2.9");
    CHECK(a.total() == 10);
    for (int i = 0; i < 10; ++i) a.release("10.1.1.1");
    CHECK(a.total() == 0);
    CHECK(a.from("10.1.1.1") == 0);
}

TEST_CASE("the pool is refused at full whatever the draw") {
    auto a = never_drop(PreauthLimits{1, 4, 30, 8});
    for (int i = 0; i < 8; ++i) REQUIRE(a.admit("10.0.0." + std::to_string(i)) == Admission::kAdmitted);
    CHECK(a.admit("10.0.0.100") == Admission::kFull);
    CHECK(std::string(admission_reason(Admission::kFull)) == "unauthenticated_cap");
}

TEST_CASE("random early drop: none below start, rate at start, rising linearly to all at full") {
    PreauthAdmission a(PreauthLimits{10, 64, 30, 256}, [] { return 0.5; });
    CHECK(a.drop_probability(0) == 0.0);
    CHECK(a.drop_probability(63) == 0.0);
    CHECK(a.drop_probability(64) == Approx(0.30));
    CHECK(a.drop_probability(160) == Approx(0.65));
    CHECK(a.drop_probability(256) == 1.0);
    // A draw of 0.5 passes below 50 % drop probability and is refused above it.
    for (int i = 0; i < 64; ++i) REQUIRE(a.admit("10.0." + std::to_string(i / 10) + "." + std::to_string(i)) ==
                                         Admission::kAdmitted);
    CHECK(a.admit("10.9.9.9") == Admission::kAdmitted);  // 64 held: 30 % < 0.5
    while (a.drop_probability(a.total()) < 0.5) {
        REQUIRE(a.admit("10.8." + std::to_string(a.total())) == Admission::kAdmitted);
    }
    CHECK(a.admit("10.7.7.7") == Admission::kRandomEarlyDrop);
    CHECK(std::string(admission_reason(Admission::kRandomEarlyDrop)) == "random_early_drop");
}

TEST_CASE("the default draw refuses about the configured share at start") {
    PreauthAdmission a(PreauthLimits{1000, 0, 30, 100000});
    int refused = 0;
    for (int i = 0; i < 2000; ++i) {
        if (a.admit("10.0.0.1") != Admission::kAdmitted) ++refused;
        a.release("10.0.0.1");
    }
    CHECK(refused > 450);  // 30 % of 2000 = 600; far outside chance on either side
    CHECK(refused < 750);
}

TEST_CASE("the pre-auth flags set the limits, in sshd's syntax") {
    auto o = parse_options({"--max-startups", "20:50:80", "--per-source-max-startups=3"});
    CHECK(o.preauth.drop_start == 20);
    CHECK(o.preauth.drop_rate_percent == 50);
    CHECK(o.preauth.full == 80);
    CHECK(o.preauth.per_source == 3);
    auto d = parse_options({});
    CHECK(d.preauth.per_source == 10);
    CHECK(d.preauth.full == 256);
    CHECK_THROWS_AS(parse_options({"--max-startups", "10:30"}), UsageError);
    CHECK_THROWS_AS(parse_options({"--max-startups", "90:30:80"}), UsageError);
    CHECK_THROWS_AS(parse_options({"--max-startups", "10:101:80"}), UsageError);
    CHECK_THROWS_AS(parse_options({"--per-source-max-startups", "0"}), UsageError);
}

TEST_CASE("START = FULL is a plain cap: nothing dropped below it") {
    PreauthAdmission a(PreauthLimits{256, 256, 30, 256}, [] { return 0.0; });
    CHECK(a.drop_probability(255) == 0.0);
    CHECK(a.drop_probability(256) == 1.0);
    for (int i = 0; i < 256; ++i) REQUIRE(a.admit("127.0.0.1") == Admission::kAdmitted);
    CHECK(a.admit("127.0.0.1") == Admission::kPerSource);
}
