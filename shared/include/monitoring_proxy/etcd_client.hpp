// A small etcd 3.4 client over its native gRPC API (stubs generated from etcd's own protos at build time):
// the few calls cluster mode needs. Every unary call has a deadline; a call that finds its endpoint unreachable
// is retried once on each other endpoint before it fails with Unavailable. Thread-safe: one Client may be used
// from several threads (gRPC stubs are).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace monitoring_proxy::etcd {

// Base of every error of this client.
class EtcdError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};
// An --etcd URL or a TLS file that cannot be used.
class ConfigError : public EtcdError {
public:
    using EtcdError::EtcdError;
};
// No endpoint answered within the deadline (or all refused the connection).
class Unavailable : public EtcdError {
public:
    using EtcdError::EtcdError;
};
// The lease expired or was revoked (keepalive answered TTL 0, or a put named a lease etcd no longer has).
class LeaseExpired : public EtcdError {
public:
    using EtcdError::EtcdError;
};
// A watch asked for a revision etcd has compacted away: list again.
class Compacted : public EtcdError {
public:
    Compacted(const std::string& what, std::int64_t compact_revision)
        : EtcdError(what), compact_revision(compact_revision) {}
    std::int64_t compact_revision;
};

struct Endpoint {
    std::string url;        // as given: http://host:port or https://host:port
    std::string authority;  // host:port, what gRPC connects to
    bool tls = false;
};
// "http://127.0.0.1:2379,https://etcd1:2379" -> endpoints; ConfigError naming the bad one.
std::vector<Endpoint> parse_endpoints(std::string_view comma_separated);

struct TlsFiles {
    std::string cacert, cert, key;  // PEM files; all empty: the system's roots, no client certificate
};

struct ClientOptions {
    std::vector<Endpoint> endpoints;
    TlsFiles tls;
    std::chrono::milliseconds call_timeout{2000};  // per attempt on one endpoint
};

struct KeyValue {
    std::string key, value;
    std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct RangeResult {
    std::vector<KeyValue> kvs;
    std::int64_t revision = 0;  // the store's revision the read saw
};

// One comparison of a transaction, on a key's create_revision, mod_revision or version (0 = key absent).
struct Compare {
    enum class Field { kCreateRevision, kModRevision, kVersion };
    enum class Result { kEqual, kNotEqual, kLess, kGreater };
    std::string key;
    Field field = Field::kModRevision;
    Result result = Result::kEqual;
    std::int64_t number = 0;
    std::string range_end;  // non-empty: the comparison holds for every key in [key, range_end)
    static Compare mod_revision(std::string key, std::int64_t rev) {
        return {std::move(key), Field::kModRevision, Result::kEqual, rev, {}};
    }
    // No key under `prefix` was written after revision `rev` (deletions are not seen: absent keys compare true).
    static Compare unchanged_since(std::string prefix, std::int64_t rev, std::string end) {
        return {std::move(prefix), Field::kModRevision, Result::kLess, rev + 1, std::move(end)};
    }
    static Compare create_revision(std::string key, std::int64_t rev) {
        return {std::move(key), Field::kCreateRevision, Result::kEqual, rev, {}};
    }
    static Compare version(std::string key, std::int64_t v) {
        return {std::move(key), Field::kVersion, Result::kEqual, v, {}};
    }
    static Compare absent(std::string key) { return version(std::move(key), 0); }
};

// One operation of a transaction branch.
struct Op {
    enum class Kind { kPut, kDelete, kDeletePrefix, kGet };
    Kind kind = Kind::kPut;
    std::string key, value;
    std::int64_t lease = 0;  // put only: attach to this lease (0: none)
    static Op put(std::string key, std::string value, std::int64_t lease = 0) {
        return {Kind::kPut, std::move(key), std::move(value), lease};
    }
    static Op remove(std::string key) { return {Kind::kDelete, std::move(key), {}, 0}; }
    static Op remove_prefix(std::string prefix) { return {Kind::kDeletePrefix, std::move(prefix), {}, 0}; }
    static Op get(std::string key) { return {Kind::kGet, std::move(key), {}, 0}; }
};

struct TxnResult {
    bool succeeded = false;
    std::int64_t revision = 0;
    std::vector<KeyValue> got;  // the kvs of the executed branch's kGet operations, in order
};

struct WatchEvent {
    enum class Type { kPut, kDelete };
    Type type = Type::kPut;
    KeyValue kv;  // for kDelete only key and mod_revision are meaningful
};

struct WatchBatch {
    std::vector<WatchEvent> events;
    std::int64_t revision = 0;  // header revision of this response
};

class Client;

// A watch on a key prefix from a start revision, on its own gRPC stream. next() blocks; cancel() from any
// thread ends a blocked next() (nullopt). The stream asks for a leader (etcd's "hasleader" metadata): a member
// cut off from its cluster ends the watch instead of going silent.
class Watch {
public:
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    // The next batch of events; nullopt once cancelled. Throws Compacted, Unavailable, EtcdError.
    std::optional<WatchBatch> next();
    void cancel() noexcept;
    // Whether etcd confirmed the watch (its "created" response): a watch that ends after that was working and
    // may be resumed from the last revision seen; one that never got there did not reach a working member.
    bool created() const noexcept;

private:
    friend class Client;
    struct State;
    explicit Watch(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

class Client {
public:
    explicit Client(ClientOptions options);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Every key starting with `prefix` (sorted by key), at `revision` (0: the latest).
    RangeResult range_prefix(std::string_view prefix, std::int64_t revision = 0);
    std::optional<KeyValue> get(std::string_view key);
    // If every comparison holds, the success ops, else the failure ops; atomically.
    TxnResult txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                  const std::vector<Op>& failure = {});
    void put(std::string_view key, std::string_view value, std::int64_t lease = 0);

    std::int64_t lease_grant(std::int64_t ttl_seconds);  // the new lease's id
    // One keepalive over the LeaseKeepAlive stream; returns the TTL etcd granted. LeaseExpired when gone.
    std::int64_t lease_keep_alive(std::int64_t lease);
    void lease_revoke(std::int64_t lease);  // a lease already gone is not an error

    std::unique_ptr<Watch> watch_prefix(std::string_view prefix, std::int64_t start_revision);

    // The URL of the endpoint the last successful call used.
    std::string current_endpoint() const;
    std::string endpoints_text() const;  // every URL, comma-separated (for logs)

    struct Impl;  // gRPC channels and stubs (shared/src/etcd/channel.hpp)

private:
    std::unique_ptr<Impl> impl_;
};

// The end of the range of keys starting with `prefix` (etcd's range_end for a prefix).
std::string prefix_end(std::string_view prefix);

}  // namespace monitoring_proxy::etcd
