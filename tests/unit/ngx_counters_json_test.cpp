#include "tunnel/counters_json.hpp"

#include <catch2/catch.hpp>

using namespace monitoring_proxy::tunnel;

TEST_CASE("counters render as JSON with every status class and outcome", "[ngx][counters]") {
    CountersSnapshot snap;
    snap.capacity = 8;
    snap.totals.requests = 3;
    CounterValues web1;
    web1.requests = 2;
    web1.responses_by_class[1] = 2;
    web1.outcomes[static_cast<std::size_t>(Outcome::kProxied)] = 2;
    web1.bytes_sent = 300;
    web1.last_unix_ms = 1700000000123;
    web1.last_status = 200;
    web1.last_duration_ms = 12;
    snap.targets.push_back({"web1", web1});
    snap.targets.push_back({"we\"ird", {}});

    const std::string json = counters_json(snap);
    CHECK(json.rfind("{\"capacity\":8,\"dropped_targets\":0,\"totals\":{\"requests\":3,", 0) == 0);
    CHECK(json.find("\"web1\":{\"requests\":2,\"responses\":{\"1xx\":0,\"2xx\":2,\"3xx\":0,\"4xx\":0,\"5xx\":0},"
                    "\"outcomes\":{\"proxied\":2,\"unknown_target\":0,") != std::string::npos);
    CHECK(json.find("\"bytes_sent\":300,\"last\":{\"unix_ms\":1700000000123,\"status\":200,\"duration_ms\":12}}")
          != std::string::npos);
    CHECK(json.find("\"we\\\"ird\"") != std::string::npos);
    CHECK(json.back() == '\n');
}

TEST_CASE("an empty table renders an empty targets object", "[ngx][counters]") {
    CHECK(counters_json({}).find("\"targets\":{}}") != std::string::npos);
}
