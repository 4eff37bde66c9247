// Per-target request counters kept in one block of memory shared by every nginx worker (an nginx shared memory
// zone; in unit tests any buffer). Workers write with relaxed atomics, the metrics and status pages read a
// snapshot. No locks: a slot is claimed once by compare-and-swap and never freed, so a reader can never see a
// slot move. The table is fixed-size; when it is full, new targets are only counted in the totals and in
// `dropped_targets`.
//
// Only declared targets get a slot (the caller decides): names from hostile requests for unknown targets must
// not be able to fill the table.
#pragma once

#include "tunnel/outcome.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace monitoring_proxy::tunnel {

// Index into responses_by_class: 0 for 1xx ... 4 for 5xx.
inline constexpr std::size_t kStatusClassCount = 5;

// What one finished request adds.
struct RequestRecord {
    Outcome outcome = Outcome::kProxied;  // final_outcome() of the request
    unsigned status = 0;                  // HTTP status sent to the client
    std::uint64_t bytes_sent = 0;         // bytes sent to the client (headers and body)
    std::uint64_t duration_ms = 0;        // from reading the request to logging it
    std::int64_t started_unix_ms = 0;     // when nginx began reading the request
};

// Plain values read from the table.
struct CounterValues {
    std::uint64_t requests = 0;
    std::array<std::uint64_t, kStatusClassCount> responses_by_class{};  // [0] = 1xx ... [4] = 5xx
    std::array<std::uint64_t, kOutcomeCount> outcomes{};                // indexed by Outcome
    std::uint64_t bytes_sent = 0;
    // The most recently *started* request (not the last one logged: with several workers a request can be
    // logged after a later one). 0: never.
    std::int64_t last_unix_ms = 0;
    unsigned last_status = 0;
    std::uint64_t last_duration_ms = 0;
};

struct TargetCounters {
    std::string name;
    CounterValues values;
};

struct CountersSnapshot {
    CounterValues totals;                 // every request the module decided, targets or not
    std::uint64_t dropped_targets = 0;    // records that found the table full (counted in totals only)
    std::uint32_t capacity = 0;
    std::vector<TargetCounters> targets;  // sorted by name
};

// A view of a formatted block; copying the view does not copy the counters.
class CounterTable {
public:
    // Bytes needed for `capacity` targets.
    static std::size_t bytes_for(std::uint32_t capacity) noexcept;
    // How many targets fit in `bytes`.
    static std::uint32_t capacity_for(std::size_t bytes) noexcept;
    // Lays out an empty table in `memory` (aligned to 64 bytes, `bytes` long). nullopt when too small.
    static std::optional<CounterTable> format(void* memory, std::size_t bytes) noexcept;
    // A table formatted earlier (by this layout version); nullopt if `memory` holds something else.
    static std::optional<CounterTable> attach(void* memory) noexcept;

    // Adds one request. `target` empty: totals only (unknown or invalid names).
    void record(std::string_view target, const RequestRecord& request) noexcept;

    std::optional<CounterValues> find(std::string_view target) const noexcept;
    CountersSnapshot snapshot() const;
    std::uint32_t capacity() const noexcept;

private:
    struct Header;
    struct Slot;
    explicit CounterTable(Header* header) noexcept : header_(header) {}
    Slot* slots() const noexcept;
    Slot* find_or_claim(std::string_view target) noexcept;
    const Slot* lookup(std::string_view target) const noexcept;
    Header* header_;
};

// The status class index (0 for 1xx ... 4 for 5xx); statuses outside 100..599 count as 5xx.
std::size_t status_class_index(unsigned status) noexcept;

}  // namespace monitoring_proxy::tunnel
