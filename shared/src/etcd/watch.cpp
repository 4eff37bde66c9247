// The Watch stream: one WatchCreateRequest for a prefix from a revision, then batches of events until the stream
// ends. Failover is the caller's (watch again from the last revision, or list again): an endpoint that failed is
// skipped next time.
#include "channel.hpp"

namespace monitoring_proxy::etcd {

struct Watch::State {
    Client::Impl* impl = nullptr;
    std::size_t connection = 0;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>> stream;
    std::string prefix;
    std::int64_t start_revision = 0;
    bool created = false;
    bool finished = false;  // Finish() called: a stream is finished once
    std::atomic<bool> cancelled{false};

    [[noreturn]] void fail_stream() {
        grpc::Status status = stream->Finish();
        finished = true;
        const std::string url = impl->connections[connection].endpoint.url;
        if (endpoint_unreachable(status) || status.ok()) {
            // Start the next watch on another endpoint.
            std::size_t expected = connection;
            impl->current.compare_exchange_strong(expected, (connection + 1) % impl->connections.size());
            throw Unavailable("etcd watch at " + url + " ended: " + (status.ok() ? "stream closed" : status_text(status)));
        }
        throw EtcdError("etcd watch at " + url + ": " + status_text(status));
    }
};

Watch::Watch(std::unique_ptr<State> state) : state_(std::move(state)) {}

Watch::~Watch() {
    if (!state_->stream || state_->finished) return;
    cancel();
    state_->stream->Finish();  // after TryCancel this returns promptly
}

void Watch::cancel() noexcept {
    state_->cancelled = true;
    state_->ctx.TryCancel();
}

bool Watch::created() const noexcept { return state_->created; }

std::optional<WatchBatch> Watch::next() {
    State& st = *state_;
    etcdserverpb::WatchResponse resp;
    for (;;) {
        if (st.cancelled) return std::nullopt;
        if (!st.stream->Read(&resp)) {
            if (st.cancelled) return std::nullopt;
            st.fail_stream();
        }
        if (resp.compact_revision() != 0)
            throw Compacted("etcd watch of " + st.prefix + " from revision " + std::to_string(st.start_revision) +
                                ": compacted up to revision " + std::to_string(resp.compact_revision()),
                            resp.compact_revision());
        if (resp.canceled())
            throw EtcdError("etcd cancelled the watch of " + st.prefix + ": " +
                            (resp.cancel_reason().empty() ? "no reason given" : resp.cancel_reason()));
        if (resp.created()) {
            st.created = true;
            if (resp.events_size() == 0) continue;
        }
        WatchBatch batch;
        batch.revision = resp.header().revision();
        for (const auto& ev : resp.events()) {
            WatchEvent out;
            out.type = ev.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete : WatchEvent::Type::kPut;
            out.kv = to_key_value(ev.kv());
            batch.events.push_back(std::move(out));
        }
        if (batch.events.empty()) continue;  // progress notifications
        return batch;
    }
}

std::unique_ptr<Watch> Client::watch_prefix(std::string_view prefix, std::int64_t start_revision) {
    auto st = std::make_unique<Watch::State>();
    st->impl = impl_.get();
    st->connection = impl_->current.load();
    st->prefix = std::string(prefix);
    st->start_revision = start_revision;
    // Without a leader a member would keep the stream open and send nothing; with this it cancels the watch.
    st->ctx.AddMetadata("hasleader", "true");
    Connection& c = impl_->connections[st->connection];
    st->stream = c.watch->Watch(&st->ctx);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(st->prefix);
    create->set_range_end(prefix_end(st->prefix));
    create->set_start_revision(start_revision);
    if (!st->stream->Write(req)) st->fail_stream();
    return std::unique_ptr<Watch>(new Watch(std::move(st)));
}

}  // namespace monitoring_proxy::etcd
