#include "monitoring_proxy/names.hpp"
#include "monitoring_proxy/json.hpp"
#include "monitoring_proxy/ssh_keys.hpp"

#include <catch2/catch.hpp>

using namespace monitoring_proxy;

TEST_CASE("target names follow the documented rule", "[names]") {
    for (const char* ok : {"a", "web1", "0", "host-1.example_x", "a.b-c_d"}) CHECK(valid_target_name(ok));
    CHECK(valid_target_name(std::string(63, 'a')));
    CHECK_FALSE(valid_target_name(std::string(64, 'a')));
    CHECK_FALSE(valid_target_name(std::string("a\0b", 3)));
    for (const char* bad : {"", "Web1", "-web", ".x", "_x", "a b", "a/b", "a%2f", "é", ".."})
        CHECK_FALSE(valid_target_name(bad));
    CHECK_THAT(check_target_name("Bad Name"), Catch::Contains("[a-z0-9][a-z0-9._-]{0,62}"));
    CHECK_THAT(check_target_name("a\nb"), Catch::Contains("\\x0a"));
    CHECK(check_target_name("ok").empty());
}

TEST_CASE("label names and values follow Prometheus", "[names]") {
    for (const char* ok : {"env", "_x", "Team_2"}) CHECK(valid_label_name(ok));
    for (const char* bad : {"", "2x", "a-b", "a.b", "__name__", "__meta_x"}) CHECK_FALSE(valid_label_name(bad));
    CHECK_THAT(check_label_name("__x"), Catch::Contains("reserved"));
    CHECK(check_label_value("prod ünïcode ✓").empty());
    CHECK_FALSE(check_label_value("\xff").empty());
    CHECK_FALSE(check_label_value("\xc0\xaf").empty());       // overlong '/'
    CHECK_FALSE(check_label_value("\xed\xa0\x80").empty());   // surrogate
    CHECK_FALSE(check_label_value("\xe2\x82").empty());       // truncated
    CHECK_FALSE(check_label_value(std::string(1025, 'x')).empty());
}

TEST_CASE("paths must be clean absolute paths", "[names]") {
    CHECK(check_path("/metrics").empty());
    CHECK(check_path("/a/b-c_d.e").empty());
    for (const char* bad : {"", "metrics", "/a/../b", "/a/..", "/a//b", "/a?b", "/a%2e", "/a b", "/./a"})
        CHECK_FALSE(check_path(bad).empty());
}

TEST_CASE("JSON strings are escaped", "[json]") {
    CHECK(json::quote("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST_CASE("public keys parse and fingerprint like ssh-keygen -lf", "[sshkeys]") {
    // `ssh-keygen -lf` prints this fingerprint for the key below.
    const char* line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuJ7p6Uz2l8/sjvTHf9kTqZr3z1Pw8DX4NqcvmM8tqj me@host";
    auto key = parse_public_key(line);
    CHECK(key.type == "ssh-ed25519");
    CHECK(key.comment == "me@host");
    CHECK(key.fingerprint == "SHA256:DsIy6lcb8i6wBHidOkWLwdRH10sIcgVX0k1Gb+hHQlo");
    CHECK(looks_like_fingerprint(key.fingerprint));
    CHECK_THROWS_WITH(parse_public_key("ssh-foo AAAA"), Catch::Contains("unknown public key type"));
    CHECK_THROWS_WITH(parse_public_key("ssh-ed25519"), Catch::Contains("no key data"));
    CHECK_THROWS_WITH(parse_public_key("ssh-ed25519 AAAAnotbase64!!"), Catch::Contains("not a valid"));
    CHECK_THROWS_WITH(parse_public_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHuJ7p6Uz2l8/sjvTHf9kTqZr3z1Pw8DX4NqcvmM8tqj"),
                      Catch::Contains("ssh-rsa"));
    CHECK_FALSE(looks_like_fingerprint("SHA256:short"));
    CHECK_FALSE(looks_like_fingerprint("MD5:" + std::string(43, 'a')));
}
