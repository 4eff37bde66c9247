// Unary calls with a deadline each, failing over to the next endpoint when one does not answer.
#include <fstream>
#include <sstream>

#include "channel.hpp"

namespace monitoring_proxy::etcd {
namespace {

std::string read_pem(const std::string& path, const char* flag) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    if (in) text << in.rdbuf();
    if (!in || text.str().empty()) throw ConfigError(std::string(flag) + " " + path + ": cannot read the PEM file");
    return text.str();
}

std::shared_ptr<grpc::ChannelCredentials> credentials(const Endpoint& e, const TlsFiles& tls) {
    if (!e.tls) return grpc::InsecureChannelCredentials();
    grpc::SslCredentialsOptions ssl;
    if (!tls.cacert.empty()) ssl.pem_root_certs = read_pem(tls.cacert, "--etcd-cacert");
    if (tls.cert.empty() != tls.key.empty())
        throw ConfigError("--etcd-cert and --etcd-key go together (a client certificate needs its key)");
    if (!tls.cert.empty()) {
        ssl.pem_cert_chain = read_pem(tls.cert, "--etcd-cert");
        ssl.pem_private_key = read_pem(tls.key, "--etcd-key");
    }
    return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments channel_arguments() {
    grpc::ChannelArguments args;
    // Reconnect quickly when etcd comes back (gRPC's default backoff grows to 120 s).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Find a silently dead connection (partition) under a long watch. etcd's default minimum ping interval is
    // 5 s; pinging more often gets the connection closed ("too_many_pings").
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    return args;
}

template <class Call>
void with_failover(Client::Impl& impl, const char* what, Call&& call) {
    const std::size_t n = impl.connections.size();
    const std::size_t first = impl.current.load();
    std::string failures;
    for (std::size_t attempt = 0; attempt < n; ++attempt) {
        const std::size_t i = (first + attempt) % n;
        Connection& c = impl.connections[i];
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + impl.options.call_timeout);
        grpc::Status status = call(c, ctx);
        if (status.ok()) {
            impl.current.store(i);
            return;
        }
        if (!endpoint_unreachable(status))
            throw EtcdError(std::string("etcd ") + what + " at " + c.endpoint.url + ": " + status_text(status));
        failures += (failures.empty() ? "" : "; ") + c.endpoint.url + ": " + status_text(status);
    }
    throw Unavailable(std::string("etcd ") + what + ": no endpoint answered (" + failures + ")");
}

void set_compare(etcdserverpb::Compare& out, const Compare& in) {
    using PB = etcdserverpb::Compare;
    out.set_key(in.key);
    if (!in.range_end.empty()) out.set_range_end(in.range_end);
    switch (in.result) {
    case Compare::Result::kEqual: out.set_result(PB::EQUAL); break;
    case Compare::Result::kNotEqual: out.set_result(PB::NOT_EQUAL); break;
    case Compare::Result::kLess: out.set_result(PB::LESS); break;
    case Compare::Result::kGreater: out.set_result(PB::GREATER); break;
    }
    switch (in.field) {
    case Compare::Field::kCreateRevision: out.set_target(PB::CREATE); out.set_create_revision(in.number); break;
    case Compare::Field::kModRevision: out.set_target(PB::MOD); out.set_mod_revision(in.number); break;
    case Compare::Field::kVersion: out.set_target(PB::VERSION); out.set_version(in.number); break;
    }
}

void set_op(etcdserverpb::RequestOp& out, const Op& in) {
    switch (in.kind) {
    case Op::Kind::kPut: {
        auto* put = out.mutable_request_put();
        put->set_key(in.key);
        put->set_value(in.value);
        put->set_lease(in.lease);
        break;
    }
    case Op::Kind::kDelete: out.mutable_request_delete_range()->set_key(in.key); break;
    case Op::Kind::kDeletePrefix: {
        auto* del = out.mutable_request_delete_range();
        del->set_key(in.key);
        del->set_range_end(prefix_end(in.key));
        break;
    }
    case Op::Kind::kGet: out.mutable_request_range()->set_key(in.key); break;
    }
}

}  // namespace

std::string status_text(const grpc::Status& s) {
    std::string text = s.error_message().empty() ? "gRPC status " + std::to_string(s.error_code()) : s.error_message();
    return text;
}

KeyValue to_key_value(const mvccpb::KeyValue& kv) {
    return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()};
}

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>()) {
    impl_->options = std::move(options);
    if (impl_->options.endpoints.empty()) throw ConfigError("no etcd endpoint given (--etcd URL[,URL...])");
    for (const auto& e : impl_->options.endpoints) {
        Connection c;
        c.endpoint = e;
        c.channel = grpc::CreateCustomChannel(e.authority, credentials(e, impl_->options.tls), channel_arguments());
        c.kv = etcdserverpb::KV::NewStub(c.channel);
        c.lease = etcdserverpb::Lease::NewStub(c.channel);
        c.watch = etcdserverpb::Watch::NewStub(c.channel);
        impl_->connections.push_back(std::move(c));
    }
}

Client::~Client() = default;

RangeResult Client::range_prefix(std::string_view prefix, std::int64_t revision) {
    etcdserverpb::RangeRequest req;
    req.set_key(std::string(prefix));
    req.set_range_end(prefix_end(prefix));
    req.set_revision(revision);
    etcdserverpb::RangeResponse resp;
    with_failover(*impl_, "range", [&](Connection& c, grpc::ClientContext& ctx) {
        resp.Clear();
        return c.kv->Range(&ctx, req, &resp);
    });
    RangeResult out;
    out.revision = resp.header().revision();
    out.kvs.reserve(static_cast<std::size_t>(resp.kvs_size()));
    for (const auto& kv : resp.kvs()) out.kvs.push_back(to_key_value(kv));
    return out;
}

std::optional<KeyValue> Client::get(std::string_view key) {
    etcdserverpb::RangeRequest req;
    req.set_key(std::string(key));
    etcdserverpb::RangeResponse resp;
    with_failover(*impl_, "get", [&](Connection& c, grpc::ClientContext& ctx) {
        resp.Clear();
        return c.kv->Range(&ctx, req, &resp);
    });
    if (resp.kvs_size() == 0) return std::nullopt;
    return to_key_value(resp.kvs(0));
}

TxnResult Client::txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                      const std::vector<Op>& failure) {
    etcdserverpb::TxnRequest req;
    for (const auto& c : compares) set_compare(*req.add_compare(), c);
    for (const auto& op : success) set_op(*req.add_success(), op);
    for (const auto& op : failure) set_op(*req.add_failure(), op);
    etcdserverpb::TxnResponse resp;
    with_failover(*impl_, "txn", [&](Connection& c, grpc::ClientContext& ctx) {
        resp.Clear();
        grpc::Status status = c.kv->Txn(&ctx, req, &resp);
        // A put naming a lease etcd no longer has: not an endpoint problem, and no retry elsewhere helps.
        if (!status.ok() && status.error_message().find("lease not found") != std::string::npos)
            throw LeaseExpired("etcd txn at " + c.endpoint.url + ": " + status_text(status));
        return status;
    });
    TxnResult out;
    out.succeeded = resp.succeeded();
    out.revision = resp.header().revision();
    for (const auto& r : resp.responses())
        if (r.has_response_range())
            for (const auto& kv : r.response_range().kvs()) out.got.push_back(to_key_value(kv));
    return out;
}

void Client::put(std::string_view key, std::string_view value, std::int64_t lease) {
    txn({}, {Op::put(std::string(key), std::string(value), lease)});
}

std::int64_t Client::lease_grant(std::int64_t ttl_seconds) {
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(ttl_seconds);
    etcdserverpb::LeaseGrantResponse resp;
    with_failover(*impl_, "lease grant", [&](Connection& c, grpc::ClientContext& ctx) {
        resp.Clear();
        return c.lease->LeaseGrant(&ctx, req, &resp);
    });
    if (!resp.error().empty()) throw EtcdError("etcd lease grant: " + resp.error());
    return resp.id();
}

// The LeaseKeepAlive stream, one request and its answer per call: the deadline bounds the whole exchange, and the
// next call may go to another endpoint. (A keepalive every TTL/3 makes a stream per call cost nothing.)
std::int64_t Client::lease_keep_alive(std::int64_t lease) {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(lease);
    etcdserverpb::LeaseKeepAliveResponse resp;
    bool answered = false;
    with_failover(*impl_, "lease keepalive", [&](Connection& c, grpc::ClientContext& ctx) {
        auto stream = c.lease->LeaseKeepAlive(&ctx);
        answered = stream->Write(req) && stream->Read(&resp);
        stream->WritesDone();
        if (answered) ctx.TryCancel();  // done with the stream; its Finish then reports CANCELLED
        grpc::Status status = stream->Finish();
        return answered ? grpc::Status::OK : status;
    });
    if (resp.ttl() <= 0) throw LeaseExpired("etcd lease " + std::to_string(lease) + " has expired");
    return resp.ttl();
}

void Client::lease_revoke(std::int64_t lease) {
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(lease);
    etcdserverpb::LeaseRevokeResponse resp;
    try {
        with_failover(*impl_, "lease revoke", [&](Connection& c, grpc::ClientContext& ctx) {
            return c.lease->LeaseRevoke(&ctx, req, &resp);
        });
    } catch (const Unavailable&) {
        throw;
    } catch (const EtcdError& e) {
        if (std::string(e.what()).find("lease not found") == std::string::npos) throw;
    }
}

std::string Client::current_endpoint() const { return impl_->connections[impl_->current.load()].endpoint.url; }

std::string Client::endpoints_text() const {
    std::string out;
    for (const auto& c : impl_->connections) out += (out.empty() ? "" : ",") + c.endpoint.url;
    return out;
}

}  // namespace monitoring_proxy::etcd
