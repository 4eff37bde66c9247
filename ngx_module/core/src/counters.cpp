#include "tunnel/counters.hpp"

#include "monitoring_proxy/names.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

namespace monitoring_proxy::tunnel {

namespace {

constexpr std::uint64_t kMagic = 0x6d702d74756e6e6cULL;  // "mp-tunnl"
constexpr std::uint32_t kLayoutVersion = 2;  // 2: outcomes hopped and hop_refused
constexpr std::size_t kMaxName = kMaxTargetNameLength + 1;  // with its terminating NUL
constexpr std::uint32_t kFree = 0, kClaiming = 1, kReady = 2;
// A slot being claimed is written by another worker within nanoseconds; a worker that died mid-claim leaves
// it claiming forever, so waiting is bounded and such a slot is skipped.
constexpr int kClaimSpins = 100000;

using Counter = std::atomic<std::uint64_t>;
static_assert(Counter::is_always_lock_free, "counters in shared memory need lock-free 64-bit atomics");

std::uint64_t name_hash(std::string_view s) noexcept {  // FNV-1a
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return h;
}

}  // namespace

struct Counts {
    Counter requests{0};
    std::array<Counter, kStatusClassCount> responses_by_class{};
    std::array<Counter, kOutcomeCount> outcomes{};
    Counter bytes_sent{0};
    std::atomic<std::int64_t> last_unix_ms{0};
    Counter last_duration_ms{0};
    std::atomic<std::uint32_t> last_status{0};

    void add(const RequestRecord& r) noexcept {
        constexpr auto relaxed = std::memory_order_relaxed;
        requests.fetch_add(1, relaxed);
        responses_by_class[status_class_index(r.status)].fetch_add(1, relaxed);
        outcomes[static_cast<std::size_t>(r.outcome) % kOutcomeCount].fetch_add(1, relaxed);
        bytes_sent.fetch_add(r.bytes_sent, relaxed);
        // "Last" means most recently started: a request logged late (another worker was faster) must not
        // overwrite a newer one. Status and duration follow the winner of the time; two requests racing here
        // may still mix them, which a status page can live with.
        std::int64_t newest = last_unix_ms.load(relaxed);
        while (r.started_unix_ms >= newest) {
            if (last_unix_ms.compare_exchange_weak(newest, r.started_unix_ms, relaxed)) {
                last_status.store(r.status, relaxed);
                last_duration_ms.store(r.duration_ms, relaxed);
                break;
            }
        }
    }

    CounterValues read() const noexcept {
        constexpr auto relaxed = std::memory_order_relaxed;
        CounterValues v;
        v.requests = requests.load(relaxed);
        for (std::size_t i = 0; i < kStatusClassCount; ++i) {
            v.responses_by_class[i] = responses_by_class[i].load(relaxed);
        }
        for (std::size_t i = 0; i < kOutcomeCount; ++i) v.outcomes[i] = outcomes[i].load(relaxed);
        v.bytes_sent = bytes_sent.load(relaxed);
        v.last_unix_ms = last_unix_ms.load(relaxed);
        v.last_status = last_status.load(relaxed);
        v.last_duration_ms = last_duration_ms.load(relaxed);
        return v;
    }
};

struct alignas(64) CounterTable::Header {
    std::uint64_t magic;
    std::uint32_t layout_version;
    std::uint32_t capacity;
    Counter dropped_targets{0};
    Counts totals;
};

struct alignas(64) CounterTable::Slot {
    std::atomic<std::uint32_t> state{kFree};
    std::uint32_t name_len = 0;
    char name[kMaxName] = {};
    Counts counts;

    std::string_view name_view() const noexcept { return {name, name_len}; }
};

std::size_t status_class_index(unsigned status) noexcept {
    if (status < 100 || status > 599) return kStatusClassCount - 1;
    return status / 100 - 1;
}

std::size_t CounterTable::bytes_for(std::uint32_t capacity) noexcept {
    return sizeof(Header) + std::size_t{capacity} * sizeof(Slot);
}

std::uint32_t CounterTable::capacity_for(std::size_t bytes) noexcept {
    if (bytes < sizeof(Header)) return 0;
    const std::size_t n = (bytes - sizeof(Header)) / sizeof(Slot);
    return n > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(n);
}

std::optional<CounterTable> CounterTable::format(void* memory, std::size_t bytes) noexcept {
    const std::uint32_t capacity = capacity_for(bytes);
    if (memory == nullptr || capacity == 0 || reinterpret_cast<std::uintptr_t>(memory) % alignof(Header) != 0) {
        return std::nullopt;
    }
    auto* header = new (memory) Header{};
    header->magic = kMagic;
    header->layout_version = kLayoutVersion;
    header->capacity = capacity;
    auto* slot_memory = static_cast<unsigned char*>(memory) + sizeof(Header);
    for (std::uint32_t i = 0; i < capacity; ++i) new (slot_memory + i * sizeof(Slot)) Slot{};
    return CounterTable(header);
}

std::optional<CounterTable> CounterTable::attach(void* memory) noexcept {
    auto* header = static_cast<Header*>(memory);
    if (header == nullptr || header->magic != kMagic || header->layout_version != kLayoutVersion ||
        header->capacity == 0) {
        return std::nullopt;
    }
    return CounterTable(header);
}

std::uint32_t CounterTable::capacity() const noexcept { return header_->capacity; }

CounterTable::Slot* CounterTable::slots() const noexcept {
    return reinterpret_cast<Slot*>(reinterpret_cast<unsigned char*>(header_) + sizeof(Header));
}

CounterTable::Slot* CounterTable::find_or_claim(std::string_view target) noexcept {
    const std::uint32_t capacity = header_->capacity;
    Slot* table = slots();
    std::size_t index = name_hash(target) % capacity;
    for (std::uint32_t probe = 0; probe < capacity; ++probe, index = (index + 1) % capacity) {
        Slot& slot = table[index];
        std::uint32_t state = slot.state.load(std::memory_order_acquire);
        if (state == kFree) {
            std::uint32_t expected = kFree;
            if (slot.state.compare_exchange_strong(expected, kClaiming, std::memory_order_acq_rel)) {
                std::memcpy(slot.name, target.data(), target.size());
                slot.name_len = static_cast<std::uint32_t>(target.size());
                slot.state.store(kReady, std::memory_order_release);
                return &slot;
            }
            state = expected;  // another worker claimed it first: maybe for this very name
        }
        for (int spin = 0; state == kClaiming && spin < kClaimSpins; ++spin) {
            state = slot.state.load(std::memory_order_acquire);
        }
        if (state == kReady && slot.name_view() == target) return &slot;
    }
    return nullptr;
}

const CounterTable::Slot* CounterTable::lookup(std::string_view target) const noexcept {
    const std::uint32_t capacity = header_->capacity;
    const Slot* table = slots();
    std::size_t index = name_hash(target) % capacity;
    for (std::uint32_t probe = 0; probe < capacity; ++probe, index = (index + 1) % capacity) {
        const Slot& slot = table[index];
        const std::uint32_t state = slot.state.load(std::memory_order_acquire);
        if (state == kFree) return nullptr;
        if (state == kReady && slot.name_view() == target) return &slot;
    }
    return nullptr;
}

void CounterTable::record(std::string_view target, const RequestRecord& request) noexcept {
    header_->totals.add(request);
    if (target.empty()) return;
    if (target.size() > kMaxName) {
        header_->dropped_targets.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (Slot* slot = find_or_claim(target)) {
        slot->counts.add(request);
    } else {
        header_->dropped_targets.fetch_add(1, std::memory_order_relaxed);
    }
}

std::optional<CounterValues> CounterTable::find(std::string_view target) const noexcept {
    if (const Slot* slot = lookup(target)) return slot->counts.read();
    return std::nullopt;
}


CountersSnapshot CounterTable::snapshot() const {
    CountersSnapshot snap;
    snap.totals = header_->totals.read();
    snap.dropped_targets = header_->dropped_targets.load(std::memory_order_relaxed);
    snap.capacity = header_->capacity;
    const Slot* table = slots();
    for (std::uint32_t i = 0; i < header_->capacity; ++i) {
        if (table[i].state.load(std::memory_order_acquire) != kReady) continue;
        snap.targets.push_back({std::string(table[i].name_view()), table[i].counts.read()});
    }
    std::sort(snap.targets.begin(), snap.targets.end(),
              [](const TargetCounters& a, const TargetCounters& b) { return a.name < b.name; });
    return snap;
}

}  // namespace monitoring_proxy::tunnel
