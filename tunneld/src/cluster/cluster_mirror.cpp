#include "cluster/cluster_mirror.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>

#include "cluster/cluster_node.hpp"
#include "log.hpp"
#include "monitoring_proxy/etcd_client.hpp"
#include "server_context.hpp"
#include "session/worker.hpp"

namespace tunneld {

namespace cl = monitoring_proxy::cluster;
namespace et = monitoring_proxy::etcd;
namespace reg = monitoring_proxy::registry;

namespace {

constexpr std::chrono::milliseconds kFirstBackoff{200};
constexpr std::chrono::milliseconds kMaxBackoff{2000};
// A list that fails for this long marks the node degraded: an etcd leader election (a member killed) makes calls
// fail for about a second without anything being wrong with the cluster.
constexpr std::chrono::milliseconds kDegradedGrace{3000};

// A key or value quoted by an etcd error message may hold anything: control characters become \xNN, and the
// line is bounded, so no key can forge log lines.
std::string printable(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, 600)) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out.push_back(c);
        }
    }
    if (text.size() > 600) out += "...";
    return out;
}

std::vector<MirrorEvent> as_events(const std::vector<et::KeyValue>& kvs) {
    std::vector<MirrorEvent> out;
    out.reserve(kvs.size());
    for (const auto& kv : kvs) out.push_back({MirrorEvent::Type::kPut, kv.key, kv.value});
    return out;
}

}  // namespace

ClusterMirror::ClusterMirror(ServerContext& ctx, ClusterHealth& health, const ClusterConfig& config)
    : ctx_(ctx),
      health_(health),
      prefix_(cl::normalise_prefix(config.prefix)),
      node_id_(config.node_id),
      config_(config),
      state_(prefix_, node_id_, [this](const std::string& text) { return resolve(text); }) {
    client_ = make_client();
    // The last good targets are the ones this node already has: a key that does not decode keeps them.
    std::map<std::string, reg::TargetRecord> known;
    ctx_.registry.with([&](reg::Registry& r) {
        for (auto& e : r.snapshot())
            if (e.target) known[e.name] = *e.target;
        return 0;
    });
    state_.seed_targets(std::move(known));
    health_.starting();
}

std::unique_ptr<et::Client> ClusterMirror::make_client() const {
    return std::make_unique<et::Client>(et::ClientOptions{et::parse_endpoints(config_.endpoints),
                                                          {config_.cacert, config_.cert, config_.key},
                                                          std::chrono::milliseconds(2000)});
}

ClusterMirror::~ClusterMirror() {
    stop();
    if (thread_.joinable()) thread_.join();
    health_.stopped();
}

void ClusterMirror::start() { thread_ = std::thread([this] { run(); }); }

void ClusterMirror::stop() noexcept {
    std::lock_guard lock(mu_);
    stop_ = true;
    if (watch_) watch_->cancel();
    wake_.notify_all();
}

bool ClusterMirror::sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, d, [&] { return stop_; });
    return !stop_;
}

// Numeric HOST:PORT directly; a name resolved once (IPv4) on this thread and remembered.
std::optional<reg::HttpEndpoint> ClusterMirror::resolve(const std::string& text) {
    if (auto e = numeric_http_endpoint(text)) return e;
    if (auto it = resolved_.find(text); it != resolved_.end()) return it->second;
    std::optional<reg::HttpEndpoint> out;
    const auto colon = text.rfind(':');
    if (colon != std::string::npos && colon > 0 && text.size() <= 300) {
        addrinfo hints{};
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        const std::string host = text.substr(0, colon), port = text.substr(colon + 1);
        if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) == 0 && res) {
            auto* in = reinterpret_cast<sockaddr_in*>(res->ai_addr);
            if (ntohl(in->sin_addr.s_addr) != 0 && ntohs(in->sin_port) != 0)
                out = reg::HttpEndpoint{ntohl(in->sin_addr.s_addr), ntohs(in->sin_port)};
            freeaddrinfo(res);
        }
    }
    if (resolved_.size() > 1024) resolved_.clear();
    resolved_[text] = out;
    return out;
}

bool ClusterMirror::list_now() {
    try {
        apply_list(client_->range_prefix(prefix_));
        health_.connected(ClusterHealth::Part::kMirror);
        return true;
    } catch (const et::EtcdError&) {
        return false;
    }
}

void ClusterMirror::run() noexcept {
    ListRetry retry{kFirstBackoff, std::nullopt};
    Next next = revision_ == 0 ? Next::kList : Next::kWatch;
    while (next != Next::kStop) {
        {
            std::lock_guard lock(mu_);
            if (stop_) return;
        }
        next = next == Next::kList ? list_step(retry) : watch_step();
    }
}

ClusterMirror::Next ClusterMirror::list_step(ListRetry& retry) noexcept {
    try {
        apply_list(client_->range_prefix(prefix_));
        retry = {kFirstBackoff, std::nullopt};
        health_.connected(ClusterHealth::Part::kMirror);
        return Next::kWatch;
    } catch (const et::EtcdError& e) {
        const auto now = std::chrono::steady_clock::now();
        if (!retry.failing_since) retry.failing_since = now;
        if (now - *retry.failing_since >= kDegradedGrace)
            health_.degraded(ClusterHealth::Part::kMirror, std::string("listing ") + prefix_ + ": " + e.what());
        if (!sleep_for(retry.backoff)) return Next::kStop;
        retry.backoff = std::min(retry.backoff * 2, kMaxBackoff);
        client_ = make_client();  // fresh channels, as cluster_node does while degraded
    } catch (const std::exception& e) {  // the local registry refused the write (full, damaged)
        log_line("cluster error applying the etcd list to the registry: " + std::string(e.what()));
        if (!sleep_for(kMaxBackoff)) return Next::kStop;
    }
    return Next::kList;
}

ClusterMirror::Next ClusterMirror::watch_step() noexcept {
    std::unique_ptr<et::Watch> watch;
    Next next = Next::kList;
    try {
        watch = client_->watch_prefix(prefix_, revision_ + 1);
        {
            std::lock_guard lock(mu_);
            if (stop_) return Next::kStop;
            watch_ = watch.get();
        }
        struct Forget {  // watch_ never outlives the watch
            ClusterMirror* m;
            ~Forget() {
                std::lock_guard lock(m->mu_);
                m->watch_ = nullptr;
            }
        } forget{this};
        while (auto batch = watch->next()) apply_batch(*batch);
        return Next::kStop;  // cancelled: stopping
    } catch (const et::Compacted& e) {
        log_line("cluster watch compacted revision=" + std::to_string(revision_ + 1) +
                 " compact_revision=" + std::to_string(e.compact_revision) + "; listing everything again");
    } catch (const et::EtcdError& e) {
        if (watch && watch->created()) {
            // A working watch ended (its member stopped, a leader change): the view is current up to revision_,
            // so watching on from there (on another member) misses nothing and re-reads nothing.
            log_line("cluster watch ended reason=" + log_quote(printable(e.what())) +
                     "; resuming from revision=" + std::to_string(revision_ + 1));
            next = Next::kWatch;
        } else {
            // No member answered: the list path retries with backoff, marks the node degraded, and reconciles.
            log_line("cluster watch ended reason=" + log_quote(printable(e.what())) + "; listing again");
        }
    } catch (const std::exception& e) {
        log_line("cluster error applying an etcd watch batch to the registry: " + std::string(e.what()) +
                 "; listing again");
    }
    // No busy loop on a watch that fails at once, or on a flapping member.
    return sleep_for(std::chrono::milliseconds(50)) ? next : Next::kStop;
}

void ClusterMirror::log_errors(const MirrorChanges& changes) {
    for (const auto& e : changes.errors) log_line("cluster error " + printable(e));
}

void ClusterMirror::apply_list(const et::RangeResult& range) {
    auto changes = state_.apply_list(as_events(range.kvs), monitoring_proxy::unix_now_ms());
    log_errors(changes);
    write_declared(changes, true);
    write_view(changes, true, range.revision);
    revision_ = range.revision;
    end_local_forwards(changes);
}

void ClusterMirror::apply_batch(const et::WatchBatch& batch) {
    std::vector<MirrorEvent> events;
    events.reserve(batch.events.size());
    for (const auto& ev : batch.events)
        events.push_back({ev.type == et::WatchEvent::Type::kDelete ? MirrorEvent::Type::kDelete
                                                                    : MirrorEvent::Type::kPut,
                          ev.kv.key, ev.kv.value});
    auto changes = state_.apply_events(events, monitoring_proxy::unix_now_ms());
    log_errors(changes);
    write_declared(changes, false);
    const std::int64_t revision = std::max(batch.revision, revision_);
    write_view(changes, false, revision);
    revision_ = revision;
    end_local_forwards(changes);
}

// One transaction. Removals first, then puts, and puts refused for a fixed port another target still holds are
// tried again once the others are in (two targets swapping ports in one tunnelctl command). A put the registry
// refuses (a value tunnelctl would never write) is a logged error; the registry keeps what it had.
void ClusterMirror::write_declared(const MirrorChanges& changes, bool full) {
    if (!full && changes.targets_put.empty() && changes.targets_removed.empty()) return;
    const auto& targets = state_.targets();
    ctx_.registry.with_declared([&](reg::Registry& r) {
        r.update_declared([&](reg::DeclaredTxn& txn) {
            std::vector<std::pair<std::string, const reg::TargetRecord*>> puts;
            if (full) {
                for (const auto& name : txn.names())
                    if (!targets.count(name)) txn.remove(name);
                for (const auto& [name, record] : targets) {
                    auto have = txn.get(name);
                    if (!have || !(*have == record)) puts.emplace_back(name, &record);
                }
            } else {
                for (const auto& name : changes.targets_removed) txn.remove(name);
                for (const auto& [name, record] : changes.targets_put) puts.emplace_back(name, &record);
            }
            for (int pass = 0; pass < 2 && !puts.empty(); ++pass) {
                std::vector<std::pair<std::string, const reg::TargetRecord*>> again;
                for (const auto& [name, record] : puts) {
                    try {
                        txn.put(name, *record);
                    } catch (const reg::RefusedChange& e) {
                        if (pass == 0) {
                            again.emplace_back(name, record);
                        } else {
                            log_line("cluster error etcd key " +
                                     printable(cl::key_of(prefix_, cl::KeyKind::kTarget, name)) +
                                     ": refused by the registry: " + printable(e.what()));
                        }
                    }
                }
                puts.swap(again);
            }
        });
        return 0;
    });
}

// One transaction: the view's changed tunnels (all of them after a list), the nodes, the applied revision.
void ClusterMirror::write_view(const MirrorChanges& changes, bool full, std::int64_t revision) {
    ctx_.registry.with([&](reg::Registry& r) {
        r.update_cluster([&](reg::ClusterTxn& txn) {
            auto put_tunnel = [&](const std::string& name, const reg::ClusterTunnelRecord& record) {
                try {
                    txn.put_tunnel(name, record);
                } catch (const reg::RefusedChange& e) {
                    log_line("cluster error etcd key " + printable(cl::key_of(prefix_, cl::KeyKind::kTunnel, name)) +
                             ": refused by the registry: " + printable(e.what()));
                }
            };
            if (full) {
                txn.clear_view();
                for (const auto& [name, t] : state_.tunnels())
                    if (auto record = state_.view_tunnel(name)) put_tunnel(name, *record);
            } else {
                for (const auto& name : changes.view_tunnels) {
                    if (auto record = state_.view_tunnel(name)) put_tunnel(name, *record);
                    else txn.remove_tunnel(name);
                }
            }
            if (full || changes.nodes_changed) {
                for (const auto& [id, record] : state_.view_nodes()) {
                    try {
                        txn.put_node(id, record);
                    } catch (const reg::RefusedChange& e) {
                        log_line("cluster error etcd key " + printable(cl::key_of(prefix_, cl::KeyKind::kNode, id)) +
                                 ": refused by the registry: " + printable(e.what()));
                    }
                }
            }
            reg::ClusterStateRecord s = txn.state().value_or(
                reg::ClusterStateRecord{node_id_, reg::EtcdState::kDegraded, monitoring_proxy::unix_now_ms(), 0});
            s.node_id = node_id_;
            s.applied_revision = revision;
            txn.set_state(s);
        });
        return 0;
    });
}

void ClusterMirror::end_local_forwards(const MirrorChanges& changes) {
    for (const auto& name : changes.held_elsewhere) {
        auto it = state_.tunnels().find(name);
        if (it == state_.tunnels().end()) continue;
        end_forward(name, "taken_over_by_node", " node=" + it->second.value.node_id,
                    it->second.value.connected_unix_ms);
    }
    for (const auto& name : changes.targets_removed) end_forward(name, "target_removed", "", std::nullopt);
}

// Ends this node's forward of `name` (if any) through its worker's mailbox, as a local takeover does. With
// `older_than_ms`: only if that forward's session started no later (the other node's session is the newer one;
// when ours is newer, our own publication replaces the other node's key and that node drops its forward).
void ClusterMirror::end_forward(const std::string& name, const std::string& reason, const std::string& detail,
                                std::optional<std::int64_t> older_than_ms) {
    std::optional<TunnelOwner> owner;
    std::optional<reg::TunnelRecord> record;
    ctx_.registry.with([&](reg::Registry& r) {
        owner = ctx_.tunnels.owner(name);
        if (owner) record = r.get_tunnel(name);
        return 0;
    });
    if (!owner || owner->worker == nullptr) return;
    if (older_than_ms && record && record->connected_unix_ms > *older_than_ms) return;
    Mail cancel{Mail::Type::kCancelForward};
    cancel.session_id = owner->session_id;
    cancel.forward_id = owner->forward_id;
    cancel.reason = reason;
    cancel.detail = detail;
    owner->worker->post(std::move(cancel));
}

}  // namespace tunneld
