#include <catch2/catch.hpp>

#include "policy/address_match.hpp"
#include "policy/authorized_keys.hpp"

using tunneld::parse_authorized_keys;

namespace {
// A real ed25519 public key blob and an RSA one (type fields inside the blob matter to the parser).
const char* kEd = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const char* kRsaTypeOnly = "AAAAB3NzaC1yc2EAAAADAQABAAAAAQC/";  // "ssh-rsa" + short fields: parser checks type only
}  // namespace

TEST_CASE("plain keys, comments and blank lines", "[tunneld][authorized_keys]") {
    std::string text =
        std::string("# comment\n\nssh-ed25519 ") + kEd + " host-a@example\r\n" + "ssh-rsa " + kRsaTypeOnly + "\n";
    auto r = parse_authorized_keys(text, "ak");
    REQUIRE(r.errors.empty());
    REQUIRE(r.keys.size() == 2);
    CHECK(r.keys[0].type == "ssh-ed25519");
    CHECK(r.keys[0].blob_base64 == kEd);
    CHECK(r.keys[0].comment == "host-a@example");
    CHECK(r.keys[0].line == 3);
    CHECK(r.keys[0].forwarding_allowed);
    CHECK(r.keys[1].line == 4);
}

TEST_CASE("from, permitlisten and restrict are understood", "[tunneld][authorized_keys]") {
    std::string text =
        std::string(
            R"(from="10.0.0.0/8,!10.1.2.3,192.168.*",permitlisten="web:80",permitlisten="20001",restrict ssh-ed25519 )") +
        kEd + " c\n";
    auto r = parse_authorized_keys(text, "ak");
    REQUIRE(r.errors.empty());
    REQUIRE(r.keys.size() == 1);
    const auto& k = r.keys[0];
    CHECK(k.from == std::vector<std::string>{"10.0.0.0/8", "!10.1.2.3", "192.168.*"});
    CHECK(k.permitlisten == std::vector<std::string>{"web:80", "20001"});
    CHECK(k.forwarding_allowed);  // restrict + permitlisten: the listed forwards stay usable
}

TEST_CASE("restrict alone and no-port-forwarding forbid forwards", "[tunneld][authorized_keys]") {
    auto r = parse_authorized_keys(std::string("restrict ssh-ed25519 ") + kEd + "\n" +
                                       "no-port-forwarding,permitlisten=\"1\" ssh-ed25519 " + kEd + "\n" +
                                       "restrict,port-forwarding ssh-ed25519 " + kEd + "\n",
                                   "ak");
    REQUIRE(r.keys.size() == 3);
    CHECK_FALSE(r.keys[0].forwarding_allowed);
    CHECK_FALSE(r.keys[1].forwarding_allowed);
    CHECK(r.keys[2].forwarding_allowed);
}

TEST_CASE("unknown options and bad lines are reported as FILE:LINE and skipped", "[tunneld][authorized_keys]") {
    std::string text = std::string("command=\"/bin/sh\" ssh-ed25519 ") + kEd + "\n" +  // 1 unsupported option
                       "ssh-ed25519 " + kEd + " ok\n" +                                // 2 fine
                       "ssh-ed25519 not-base64!\n" +                                   // 3 bad base64
                       "ssh-rsa " + kEd + "\n" +                                       // 4 type mismatch
                       "from=\"10.0.0.1/8\" ssh-ed25519 " + kEd + "\n" +               // 5 host bits set
                       "from=\"unterminated ssh-ed25519 " + kEd + "\n" +               // 6 unterminated
                       "ssh-dss AAAAB3NzaC1kc3M=\n" +                                  // 7 unsupported type
                       "permitlisten=\"x:http\" ssh-ed25519 " + kEd + "\n" +           // 8 bad port
                       "ssh-ed25519\n" +                                               // 9 no key data
                       "garbage\n";                                                    // 10 no type
    auto r = parse_authorized_keys(text, "/etc/tunneld/authorized_keys");
    REQUIRE(r.keys.size() == 1);
    CHECK(r.keys[0].line == 2);
    REQUIRE(r.errors.size() == 9);
    CHECK(r.errors[0].rfind("/etc/tunneld/authorized_keys:1: unsupported option \"command\"", 0) == 0);
    CHECK(r.errors[1].rfind("/etc/tunneld/authorized_keys:3:", 0) == 0);
    CHECK(r.errors[2].find("line says \"ssh-rsa\"") != std::string::npos);
    CHECK(r.errors[3].find("CIDR") != std::string::npos);
    CHECK(r.errors[4].find("unterminated") != std::string::npos);
    CHECK(r.errors[5].find("not accepted") != std::string::npos);
    CHECK(r.errors[6].find("port must be") != std::string::npos);
    CHECK(r.errors[8].rfind("/etc/tunneld/authorized_keys:10:", 0) == 0);
    for (const auto& e : r.errors) CHECK(e.find("line skipped") != std::string::npos);
}

TEST_CASE("hostile input never crashes the parser", "[tunneld][authorized_keys]") {
    std::string junk;
    for (int i = 0; i < 4096; ++i) junk.push_back(static_cast<char>((i * 7919) % 256));
    auto r = parse_authorized_keys(junk, "junk");
    CHECK(r.keys.empty());
    auto r2 = parse_authorized_keys(std::string(70000, 'a'), "long");
    CHECK(r2.errors.size() == 1);
    auto r3 = parse_authorized_keys("from=\"\\\"\\", "x");
    CHECK(r3.keys.empty());
    CHECK(parse_authorized_keys("", "empty").keys.empty());
}

TEST_CASE("permitlisten matching", "[tunneld][authorized_keys]") {
    using tunneld::permitlisten_allows;
    CHECK(permitlisten_allows("20001", "localhost", 20001));
    CHECK_FALSE(permitlisten_allows("20001", "localhost", 20002));
    CHECK(permitlisten_allows("web:*", "web", 80));
    CHECK(permitlisten_allows("web-*:80", "web-1", 80));
    CHECK_FALSE(permitlisten_allows("web:80", "db", 80));
    CHECK(permitlisten_allows("*:*", "anything", 1));
}

TEST_CASE("from= patterns: wildcards, CIDR, negation", "[tunneld][authorized_keys]") {
    using tunneld::address_matches_patterns;
    std::vector<std::string> p{"10.0.0.0/8", "!10.1.2.3", "192.168.1.*", "2001:db8::/32"};
    CHECK(address_matches_patterns(p, "10.9.9.9"));
    CHECK_FALSE(address_matches_patterns(p, "10.1.2.3"));
    CHECK(address_matches_patterns(p, "192.168.1.77"));
    CHECK_FALSE(address_matches_patterns(p, "192.168.2.1"));
    CHECK(address_matches_patterns(p, "2001:db8::1"));
    CHECK_FALSE(address_matches_patterns(p, "2001:db9::1"));
    CHECK_FALSE(address_matches_patterns({"!127.0.0.1"}, "127.0.0.1"));
    CHECK_FALSE(address_matches_patterns({"!127.0.0.1"}, "127.0.0.2"));  // only negations: nothing allowed
    CHECK(tunneld::wildcard_match("a*b?c", "aXXbYc"));
    CHECK_FALSE(tunneld::wildcard_match("a*b?c", "aXXbc"));
    CHECK(tunneld::check_host_pattern("10.0.0.0/33") != "");
    CHECK(tunneld::check_host_pattern("!10.0.0.0/8") == "");
}

TEST_CASE("mutated valid files never crash and never yield a key with a bad blob", "[tunneld][authorized_keys]") {
    // A bounded, deterministic stand-in for a fuzzer run over the same entry point.
    const std::string seed = std::string(R"(from="10.0.0.0/8,!10.1.2.3",permitlisten="web:80",restrict ssh-ed25519 )") +
                             kEd + " c\nssh-ed25519 " + kEd + "\n";
    std::uint32_t state = 12345;
    auto next = [&] { return state = state * 1664525u + 1013904223u; };
    for (int round = 0; round < 3000; ++round) {
        std::string text = seed;
        int edits = 1 + static_cast<int>(next() % 4);
        for (int e = 0; e < edits; ++e) {
            std::size_t pos = next() % text.size();
            switch (next() % 3) {
                case 0:
                    text[pos] = static_cast<char>(next() & 0xff);
                    break;
                case 1:
                    text.erase(pos, 1 + next() % 8);
                    break;
                default:
                    text = text.substr(0, pos) + "\",= \\\n#"[next() % 7] + text.substr(pos);
                    break;
            }
            if (text.empty()) text = "x";
        }
        auto r = parse_authorized_keys(text, "fuzz");
        for (const auto& k : r.keys) {
            CHECK(tunneld::supported_key_type(k.type));
            CHECK(k.blob_base64.size() % 4 == 0);
        }
    }
}
