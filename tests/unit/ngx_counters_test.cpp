#include "tunnel/counters.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace monitoring_proxy::tunnel;

namespace {

struct Block {
    explicit Block(std::size_t bytes) : bytes(bytes), memory(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096)) {}
    ~Block() { std::free(memory); }
    std::size_t bytes;
    void* memory;
};

RequestRecord request(unsigned status, Outcome outcome = Outcome::kProxied, std::uint64_t bytes = 100,
                      std::int64_t started_unix_ms = 1700000000000) {
    RequestRecord r;
    r.outcome = outcome;
    r.status = status;
    r.bytes_sent = bytes;
    r.duration_ms = 7;
    r.started_unix_ms = started_unix_ms;
    return r;
}

}  // namespace

TEST_CASE("a formatted table counts requests per target and in total", "[ngx][counters]") {
    Block block(CounterTable::bytes_for(16));
    auto table = CounterTable::format(block.memory, block.bytes);
    REQUIRE(table);
    CHECK(table->capacity() == 16u);

    table->record("web1", request(200));
    table->record("web1", request(503, Outcome::kNotConnected, 40));
    table->record("web2", request(504, Outcome::kUpstreamTimeout));
    table->record("", request(404, Outcome::kUnknown));  // unknown names: totals only

    const auto web1 = table->find("web1");
    REQUIRE(web1);
    CHECK(web1->requests == 2u);
    CHECK(web1->responses_by_class[1] == 1u);
    CHECK(web1->responses_by_class[4] == 1u);
    CHECK(web1->outcomes[static_cast<std::size_t>(Outcome::kNotConnected)] == 1u);
    CHECK(web1->bytes_sent == 140u);
    CHECK(web1->last_status == 503u);
    CHECK(web1->last_duration_ms == 7u);
    CHECK(web1->last_unix_ms == 1700000000000);
    CHECK_FALSE(table->find("web3"));

    const auto totals = table->snapshot().totals;
    CHECK(totals.requests == 4u);
    CHECK(totals.outcomes[static_cast<std::size_t>(Outcome::kUnknown)] == 1u);

    const auto snap = table->snapshot();
    REQUIRE(snap.targets.size() == 2u);
    CHECK(snap.targets[0].name == "web1");
    CHECK(snap.targets[1].name == "web2");
    CHECK(snap.dropped_targets == 0u);
}

TEST_CASE("the last request is the most recently started one, whatever order they are logged in",
          "[ngx][counters]") {
    Block block(CounterTable::bytes_for(4));
    auto table = CounterTable::format(block.memory, block.bytes);
    REQUIRE(table);
    table->record("web1", request(403, Outcome::kPathForbidden, 10, 2000));
    table->record("web1", request(200, Outcome::kProxied, 10, 1000));  // started earlier, logged later
    auto web1 = table->find("web1");
    CHECK(web1->last_status == 403u);
    CHECK(web1->last_unix_ms == 2000);
    CHECK(web1->requests == 2u);
    table->record("web1", request(504, Outcome::kUpstreamTimeout, 10, 2000));  // same millisecond: newer wins
    CHECK(table->find("web1")->last_status == 504u);
}

TEST_CASE("status classes are indexed 1xx..5xx, nonsense counts as 5xx", "[ngx][counters]") {
    CHECK(status_class_index(101) == 0u);
    CHECK(status_class_index(200) == 1u);
    CHECK(status_class_index(304) == 2u);
    CHECK(status_class_index(499) == 3u);
    CHECK(status_class_index(599) == 4u);
    CHECK(status_class_index(0) == 4u);
    CHECK(status_class_index(1000) == 4u);
}

TEST_CASE("a full table drops new targets but keeps the totals", "[ngx][counters]") {
    Block block(CounterTable::bytes_for(2));
    auto table = CounterTable::format(block.memory, block.bytes);
    REQUIRE(table);
    table->record("a", request(200));
    table->record("b", request(200));
    table->record("c", request(200));
    table->record("a", request(200));
    CHECK(table->find("a")->requests == 2u);
    CHECK_FALSE(table->find("c"));
    const auto snap = table->snapshot();
    CHECK(snap.targets.size() == 2u);
    CHECK(snap.dropped_targets == 1u);
    CHECK(snap.totals.requests == 4u);
}

TEST_CASE("attach finds a formatted table and refuses anything else", "[ngx][counters]") {
    Block block(CounterTable::bytes_for(4));
    std::memset(block.memory, 0, block.bytes);
    CHECK_FALSE(CounterTable::attach(block.memory));
    auto table = CounterTable::format(block.memory, block.bytes);
    REQUIRE(table);
    table->record("web1", request(200));
    auto again = CounterTable::attach(block.memory);
    REQUIRE(again);
    CHECK(again->find("web1")->requests == 1u);
    CHECK_FALSE(CounterTable::format(block.memory, 8));  // too small for one slot
}

TEST_CASE("names longer than a slot holds are counted in totals only", "[ngx][counters]") {
    Block block(CounterTable::bytes_for(4));
    auto table = CounterTable::format(block.memory, block.bytes);
    REQUIRE(table);
    table->record(std::string(65, 'x'), request(200));
    CHECK(table->snapshot().targets.empty());
    CHECK(table->snapshot().totals.requests == 1u);
}

TEST_CASE("concurrent writers neither lose counts nor duplicate slots", "[ngx][counters]") {
    Block block(CounterTable::bytes_for(64));
    auto table = CounterTable::format(block.memory, block.bytes);
    REQUIRE(table);
    constexpr int kThreads = 4, kPerThread = 5000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&table] {
            for (int i = 0; i < kPerThread; ++i) table->record("t" + std::to_string(i % 8), request(200));
        });
    }
    for (auto& t : threads) t.join();
    const auto snap = table->snapshot();
    CHECK(snap.targets.size() == 8u);
    std::uint64_t sum = 0;
    for (const auto& t : snap.targets) sum += t.values.requests;
    CHECK(sum == std::uint64_t{kThreads} * kPerThread);
    CHECK(snap.totals.requests == std::uint64_t{kThreads} * kPerThread);
}
