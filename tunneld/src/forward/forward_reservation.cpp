#include "forward/forward_reservation.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "monitoring_proxy/address.hpp"

namespace tunneld {

namespace {
constexpr int kMaxBindAttempts = 64;  // ports held by other programs inside --port-range, skipped one by one
}

ForwardReservation::~ForwardReservation() {
    close_listeners();
    if (claim_ && !installed_) table_.release(*claim_);
}

void ForwardReservation::close_listeners() noexcept {
    for (int* fd : {&listen_fd_, &fixed_fd_}) {
        if (*fd >= 0) ::close(*fd);
        *fd = -1;
    }
}

bool ForwardReservation::bind(const std::map<std::uint16_t, std::string>& fixed_ports, const Binder& binder) {
    std::set<std::uint16_t> unbindable;
    for (int attempt = 0; attempt < kMaxBindAttempts; ++attempt) {
        claim_ = table_.reserve(id_.target, id_.forward_id, id_.fixed_port, fixed_ports, unbindable, failure_);
        if (!claim_) return false;
        listen_fd_ = binder(claim_->address, claim_->port, false);
        int err = errno;
        std::string where = monitoring_proxy::endpoint_text(claim_->address, claim_->port);
        if (listen_fd_ >= 0 && id_.fixed_port != 0) {
            fixed_fd_ = binder(monitoring_proxy::registry::kLoopbackAddress, claim_->port, true);
            err = errno;
            where = "127.0.0.1:" + std::to_string(claim_->port);
        }
        if (listen_fd_ >= 0 && (id_.fixed_port == 0 || fixed_fd_ >= 0)) return true;
        failure_ = "cannot listen on " + where + ": " + std::strerror(err);
        close_listeners();
        table_.release(*claim_);
        const bool fixed = id_.fixed_port != 0;
        unbindable.insert(claim_->port);
        claim_.reset();
        if (fixed) return false;  // the one port this target may have
    }
    return false;
}

bool ForwardReservation::watch(const std::function<bool(int, std::string&)>& add) {
    for (int fd : {listen_fd_, fixed_fd_})
        if (fd >= 0 && !add(fd, failure_)) return false;
    return true;
}

bool ForwardReservation::record(RegistryGateway& registry, std::uint64_t instance_id, std::int64_t now_ms,
                                TunnelOwner owner) {
    using namespace monitoring_proxy::registry;
    const TunnelRecord record{claim_->port, instance_id, now_ms, id_.client, id_.fingerprint, claim_->address};
    try {
        if (id_.self_register) {
            // Its own fsynced commit, outside the mutex the live write below takes (registry_gateway.hpp).
            registry.with_declared([&](Registry& reg) {
                reg.update_declared([&](DeclaredTxn& txn) {
                    if (txn.get(id_.target)) return;  // declared meanwhile: keep the operator's record
                    TargetRecord target;
                    target.created_unix = now_ms / 1000;
                    target.origin = Origin::kSelfRegistered;
                    target.key_fingerprints = {id_.fingerprint};
                    txn.put(id_.target, target);
                });
            });
        }
        registry.with([&](Registry& reg) {
            reg.update_live([&](LiveTxn& txn) { txn.put_tunnel(id_.target, record); });
            previous_ = table_.install(*claim_, std::move(owner));
            installed_ = true;
            return 0;
        });
    } catch (const std::exception& e) {
        failure_ = std::string("registry: ") + e.what();
        refusal_ = "registry_error";
        return false;
    }
    return true;
}

void ForwardReservation::take_listeners(int& listen_fd, int& fixed_fd) noexcept {
    listen_fd = listen_fd_;
    fixed_fd = fixed_fd_;
    listen_fd_ = fixed_fd_ = -1;
}

}  // namespace tunneld
