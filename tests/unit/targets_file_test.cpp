#include "targets_file.hpp"

#include <catch2/catch.hpp>

using monitoring_proxy::tunnelctl::parse_targets_file;

TEST_CASE("the original targets format parses", "[targets_file]") {
    auto f = parse_targets_file("# hosts\n\nlocalhost:20001 external-host-1\n  127.0.0.1:20002\texternal-host-2  # db\r\n",
                                "targets");
    CHECK(f.errors.empty());
    REQUIRE(f.entries.size() == 2);
    CHECK(f.entries[0].name == "external-host-1");
    CHECK(f.entries[0].port == 20001);
    CHECK(f.entries[0].line == 3);
    CHECK(f.entries[1].name == "external-host-2");
    CHECK(f.entries[1].port == 20002);
}

TEST_CASE("every bad line is reported as FILE:LINE", "[targets_file]") {
    auto f = parse_targets_file(
        "localhost:20001 a\n"
        "localhost:20001 b\n"       // port reused
        "localhost:20003 a\n"       // name reused
        "example.com:20004 c\n"     // not loopback
        "localhost:0 d\n"           // bad port
        "localhost:x e\n"           // bad port
        "localhost f\n"             // no port
        "justone\n"                 // one field
        "localhost:20009 Bad_Name\n"
        "localhost:20010 g h\n",
        "/etc/monitoring/targets");
    CHECK(f.entries.size() == 1);
    REQUIRE(f.errors.size() == 9);
    CHECK_THAT(f.errors[0], Catch::StartsWith("/etc/monitoring/targets:2: port 20001 already used on line 1"));
    CHECK_THAT(f.errors[1], Catch::StartsWith("/etc/monitoring/targets:3: target \"a\" already declared"));
    CHECK_THAT(f.errors[2], Catch::Contains(":4: host \"example.com\" is not loopback"));
    CHECK_THAT(f.errors[3], Catch::Contains(":5: invalid port \"0\""));
    CHECK_THAT(f.errors[4], Catch::Contains(":6: invalid port \"x\""));
    CHECK_THAT(f.errors[5], Catch::Contains(":7: \"localhost\" has no port"));
    CHECK_THAT(f.errors[6], Catch::Contains(":8: expected \"HOST:PORT NAME\""));
    CHECK_THAT(f.errors[7], Catch::Contains(":9: invalid target name"));
    CHECK_THAT(f.errors[8], Catch::Contains(":10: expected \"HOST:PORT NAME\", found more than two fields"));
}
