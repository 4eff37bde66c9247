// Small move-only RAII wrappers over LMDB, in the style of lmdbxx: a missing key is std::nullopt, every real
// error throws LmdbError carrying the environment path and mdb_strerror's text.
#pragma once

#include <lmdb.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace monitoring_proxy::lmdb {

// The files LMDB keeps in an environment directory: named here only.
inline constexpr const char* kDataFile = "data.mdb";
inline constexpr const char* kLockFile = "lock.mdb";

class LmdbError : public std::runtime_error {
public:
    LmdbError(int code, const std::string& path, const std::string& what);
    int code() const noexcept { return code_; }

private:
    int code_;
};

// Throws LmdbError("<what> (<path>): <mdb_strerror>") unless rc == MDB_SUCCESS.
void check(int rc, const std::string& path, const char* what);

inline MDB_val to_val(std::string_view s) noexcept {
    return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view to_view(const MDB_val& v) noexcept {
    return {static_cast<const char*>(v.mv_data), v.mv_size};
}

class Env {
public:
    Env() = default;
    // Creates the handle, sets map size and database count, opens `path` with `flags` and `mode`.
    Env(const std::string& path, unsigned flags, std::size_t map_size, unsigned max_dbs, mdb_mode_t mode);
    Env(Env&& o) noexcept : env_(o.env_), path_(std::move(o.path_)) { o.env_ = nullptr; }
    Env& operator=(Env&& o) noexcept;
    Env(const Env&) = delete;
    Env& operator=(const Env&) = delete;
    ~Env();

    MDB_env* get() const noexcept { return env_; }
    const std::string& path() const noexcept { return path_; }
    explicit operator bool() const noexcept { return env_ != nullptr; }
    // Clears reader slots of processes that died holding them; returns how many.
    int reader_check();
    std::size_t map_size() const;

private:
    MDB_env* env_ = nullptr;
    std::string path_;
};

class Txn {
public:
    Txn() = default;
    Txn(const Env& env, unsigned flags);  // MDB_RDONLY for readers, 0 for a write txn
    Txn(Txn&& o) noexcept : txn_(o.txn_), path_(o.path_) { o.txn_ = nullptr; }
    Txn& operator=(Txn&& o) noexcept;
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    ~Txn() { abort(); }

    MDB_txn* get() const noexcept { return txn_; }
    const std::string& path() const noexcept { return *path_; }
    void commit();
    void abort() noexcept;
    // Read txns only: release the snapshot but keep the reader slot, then take a fresh snapshot.
    void reset() noexcept;
    int renew() noexcept;  // returns the LMDB code (MDB_MAP_RESIZED is the caller's to handle)

    // Opens (or with MDB_CREATE creates) a named database; nullopt if it does not exist and no MDB_CREATE.
    std::optional<MDB_dbi> open_db(const char* name, unsigned flags = 0);
    std::optional<std::string_view> get(MDB_dbi dbi, std::string_view key) const;
    void put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags = 0);
    bool del(MDB_dbi dbi, std::string_view key, const std::string_view* value = nullptr);

private:
    MDB_txn* txn_ = nullptr;
    const std::string* path_ = nullptr;
};

class Cursor {
public:
    Cursor(const Txn& txn, MDB_dbi dbi);
    Cursor(Cursor&& o) noexcept : cur_(o.cur_), path_(o.path_) { o.cur_ = nullptr; }
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;
    Cursor& operator=(Cursor&&) = delete;
    ~Cursor();

    // Positions the cursor; false at the end / when nothing matches.
    bool get(MDB_val& key, MDB_val& value, MDB_cursor_op op);
    void del();

private:
    MDB_cursor* cur_ = nullptr;
    const std::string* path_ = nullptr;
};

}  // namespace monitoring_proxy::lmdb
