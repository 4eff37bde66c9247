#include "tunnel/request_path.hpp"

#include <catch2/catch.hpp>

using monitoring_proxy::tunnel::split_target_path;

TEST_CASE("the first path segment names the target, the rest is forwarded", "[ngx][path]") {
    auto p = split_target_path("/web1/metrics");
    CHECK(p.name == "web1");
    CHECK(p.rest == "/metrics");

    p = split_target_path("/web1/a/b/c");
    CHECK(p.name == "web1");
    CHECK(p.rest == "/a/b/c");
}

TEST_CASE("an empty rest becomes /", "[ngx][path]") {
    CHECK(split_target_path("/web1").rest == "/");
    CHECK(split_target_path("/web1").name == "web1");
    CHECK(split_target_path("/web1/").rest == "/");
    CHECK(split_target_path("/web1/").name == "web1");
}

TEST_CASE("paths without a name give an empty name", "[ngx][path]") {
    CHECK(split_target_path("/").name.empty());
    CHECK(split_target_path("/").rest == "/");
    CHECK(split_target_path("").name.empty());
    CHECK(split_target_path("").rest == "/");
    CHECK(split_target_path("//x").name.empty());
    CHECK(split_target_path("//x").rest == "/x");
}

TEST_CASE("the rest keeps every byte after the name", "[ngx][path]") {
    auto p = split_target_path("/host.example-1/metrics?x");  // r->uri has no query, but nothing is lost
    CHECK(p.name == "host.example-1");
    CHECK(p.rest == "/metrics?x");
}
