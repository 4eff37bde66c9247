#include "tunnel/scrape_timeout.hpp"

#include <catch2/catch.hpp>

using namespace monitoring_proxy::tunnel;

TEST_CASE("scrape timeout header values Prometheus sends parse to milliseconds", "[ngx][timeout]") {
    CHECK(parse_scrape_timeout_ms("10") == 10000u);
    CHECK(parse_scrape_timeout_ms("2.5") == 2500u);
    CHECK(parse_scrape_timeout_ms("0.25") == 250u);
    CHECK(parse_scrape_timeout_ms(" 3 ") == 3000u);
    CHECK(parse_scrape_timeout_ms(".5") == 500u);
    CHECK(parse_scrape_timeout_ms("1.23456") == 1234u);  // sub-millisecond digits dropped
}

TEST_CASE("malformed scrape timeout headers are ignored", "[ngx][timeout]") {
    for (const char* bad : {"", " ", "-1", "+1", "1e3", "abc", "10s", "1.", ".", "1..2", "0", "0.0", "0.0001",
                            "86401", "99999999999999999999999", "1,5"}) {
        INFO(bad);
        CHECK_FALSE(parse_scrape_timeout_ms(bad).has_value());
    }
    CHECK(parse_scrape_timeout_ms("86400") == 86400000u);
}

TEST_CASE("the read timeout is the scrape timeout minus a margin, capped by the configured one",
          "[ngx][timeout]") {
    CHECK(effective_read_timeout_ms(std::nullopt, 60000) == 60000u);
    CHECK(effective_read_timeout_ms(10000, 60000) == 9500u);   // margin capped at 500 ms
    CHECK(effective_read_timeout_ms(1000, 60000) == 750u);     // a quarter of short timeouts
    CHECK(effective_read_timeout_ms(10000, 5000) == 5000u);    // never above the configured value
    CHECK(effective_read_timeout_ms(1, 60000) == 1u);          // never zero
}
