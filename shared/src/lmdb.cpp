#include "monitoring_proxy/lmdb.hpp"

#include "monitoring_proxy/lmdb_file_check.hpp"

#include <cerrno>

namespace monitoring_proxy::lmdb {

LmdbError::LmdbError(int code, const std::string& path, const std::string& what)
    : std::runtime_error(what + " (" + path + "): " + mdb_strerror(code)), code_(code) {}

void check(int rc, const std::string& path, const char* what) {
    if (rc != MDB_SUCCESS) throw LmdbError(rc, path, what);
}

Env::Env(const std::string& path, unsigned flags, std::size_t map_size, unsigned max_dbs, mdb_mode_t mode)
    : path_(path) {
    check(mdb_env_create(&env_), path_, "mdb_env_create");
    try {
        if (map_size) check(mdb_env_set_mapsize(env_, map_size), path_, "mdb_env_set_mapsize");
        check(mdb_env_set_maxdbs(env_, max_dbs), path_, "mdb_env_set_maxdbs");
        // MDB_NOTLS: reader slots belong to txn objects, not threads, so a reused read txn may be renewed from
        // any thread and tunneld's worker threads can each read.
        check(mdb_env_open(env_, path_.c_str(), flags | MDB_NOTLS, mode), path_, "cannot open LMDB environment");
        // A data file shorter than its last commit would raise SIGBUS on the first read of the map.
        const std::string data = (flags & MDB_NOSUBDIR) ? path_ : path_ + "/" + kDataFile;
        if (auto truncated = truncated_lmdb_file(data)) throw LmdbError(MDB_CORRUPTED, path_, *truncated);
    } catch (...) {
        mdb_env_close(env_);
        env_ = nullptr;
        throw;
    }
}

Env& Env::operator=(Env&& o) noexcept {
    if (this != &o) {
        if (env_) mdb_env_close(env_);
        env_ = o.env_;
        path_ = std::move(o.path_);
        o.env_ = nullptr;
    }
    return *this;
}

Env::~Env() {
    if (env_) mdb_env_close(env_);
}

int Env::reader_check() {
    int dead = 0;
    check(mdb_reader_check(env_, &dead), path_, "mdb_reader_check");
    return dead;
}

std::size_t Env::map_size() const {
    MDB_envinfo info{};
    check(mdb_env_info(env_, &info), path_, "mdb_env_info");
    return info.me_mapsize;
}

Txn::Txn(const Env& env, unsigned flags) : path_(&env.path()) {
    check(mdb_txn_begin(env.get(), nullptr, flags, &txn_), *path_,
          (flags & MDB_RDONLY) ? "cannot begin read transaction" : "cannot begin write transaction");
}

Txn& Txn::operator=(Txn&& o) noexcept {
    if (this != &o) {
        abort();
        txn_ = o.txn_;
        path_ = o.path_;
        o.txn_ = nullptr;
    }
    return *this;
}

void Txn::commit() {
    MDB_txn* t = txn_;
    txn_ = nullptr;  // committed or not, the handle is freed by mdb_txn_commit
    check(mdb_txn_commit(t), *path_, "cannot commit transaction");
}

void Txn::abort() noexcept {
    if (txn_) mdb_txn_abort(txn_);
    txn_ = nullptr;
}

void Txn::reset() noexcept {
    if (txn_) mdb_txn_reset(txn_);
}

int Txn::renew() noexcept {
    return txn_ ? mdb_txn_renew(txn_) : EINVAL;
}

std::optional<MDB_dbi> Txn::open_db(const char* name, unsigned flags) {
    MDB_dbi dbi = 0;
    int rc = mdb_dbi_open(txn_, name, flags, &dbi);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check(rc, *path_, (std::string("cannot open database '") + name + "'").c_str());
    return dbi;
}

std::optional<std::string_view> Txn::get(MDB_dbi dbi, std::string_view key) const {
    MDB_val k = to_val(key), v{};
    int rc = mdb_get(txn_, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check(rc, *path_, "mdb_get");
    return to_view(v);
}

void Txn::put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags) {
    MDB_val k = to_val(key), v = to_val(value);
    check(mdb_put(txn_, dbi, &k, &v, flags), *path_, "cannot write");
}

bool Txn::del(MDB_dbi dbi, std::string_view key, const std::string_view* value) {
    MDB_val k = to_val(key), v{};
    if (value) v = to_val(*value);
    int rc = mdb_del(txn_, dbi, &k, value ? &v : nullptr);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, *path_, "cannot delete");
    return true;
}

Cursor::Cursor(const Txn& txn, MDB_dbi dbi) : path_(&txn.path()) {
    check(mdb_cursor_open(txn.get(), dbi, &cur_), *path_, "mdb_cursor_open");
}

Cursor::~Cursor() {
    if (cur_) mdb_cursor_close(cur_);
}

bool Cursor::get(MDB_val& key, MDB_val& value, MDB_cursor_op op) {
    int rc = mdb_cursor_get(cur_, &key, &value, op);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, *path_, "mdb_cursor_get");
    return true;
}

void Cursor::del() {
    check(mdb_cursor_del(cur_, 0), *path_, "mdb_cursor_del");
}

}  // namespace monitoring_proxy::lmdb
