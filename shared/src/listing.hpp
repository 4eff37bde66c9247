// Pieces shared by the writer API (registry.cpp) and the nginx reader (reader.cpp), which must never open the
// same environment twice in one process (closing the second handle would drop LMDB's fcntl locks).
#pragma once

#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/lmdb.hpp"
#include "monitoring_proxy/registry.hpp"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace monitoring_proxy::registry::detail {

// An environment written with another schema version.
class SchemaMismatch : public RegistryError {
public:
    SchemaMismatch(const std::string& what, std::uint32_t stored) : RegistryError(what), stored(stored) {}
    std::uint32_t stored;
};

// Returns the environment's schema version: kSchemaVersion (written into a new, empty one), or
// kSchemaVersion - 1 when `accept_previous` (a migration's caller upgrades it). Throws SchemaMismatch otherwise.
std::uint32_t check_schema(lmdb::Txn& txn, MDB_dbi meta, MDB_dbi any_data, bool writable, const std::string& path,
                           bool accept_previous = false);
void write_schema_version(lmdb::Txn& txn, MDB_dbi meta);

// Adds every declared target / live tunnel to `by_name`. A record that does not decode throws DecodeError, or,
// with `unreadable`, is skipped and listed there.
void collect_targets(lmdb::Txn& txn, MDB_dbi targets, std::map<std::string, SnapshotEntry>& by_name,
                     std::vector<UnreadableRecord>* unreadable = nullptr);
void collect_tunnels(lmdb::Txn& txn, MDB_dbi tunnels, std::map<std::string, SnapshotEntry>& by_name,
                     std::vector<UnreadableRecord>* unreadable = nullptr);
std::vector<SnapshotEntry> to_sorted_vector(std::map<std::string, SnapshotEntry>&& by_name);
std::map<std::string, std::uint64_t> collect_counters(lmdb::Txn& txn, MDB_dbi counters);

// Decodes one record; a DecodeError is rethrown, or, with `unreadable`, listed there (nullopt returned).
template <class Decode>
auto decode_or_list(Decode decode, std::string_view bytes, const char* kind, std::string_view name,
                    std::vector<UnreadableRecord>* unreadable) -> std::optional<decltype(decode(bytes))> {
    try {
        return decode(bytes);
    } catch (const DecodeError& e) {
        if (unreadable == nullptr) throw;
        unreadable->push_back({kind, std::string(name), e.what()});
        return std::nullopt;
    }
}

// Every record of a database keyed by name, decoded (see collect_targets for `unreadable`).
template <class Decode>
auto collect_records(lmdb::Txn& txn, MDB_dbi dbi, Decode decode, const char* kind,
                     std::vector<UnreadableRecord>* unreadable = nullptr) {
    std::map<std::string, decltype(decode(std::string_view{}))> out;
    lmdb::Cursor c(txn, dbi);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT)) {
        const std::string_view name = lmdb::to_view(k);
        if (auto record = decode_or_list(decode, lmdb::to_view(v), kind, name, unreadable))
            out.emplace(std::string(name), std::move(*record));
    }
    return out;
}

}  // namespace monitoring_proxy::registry::detail
