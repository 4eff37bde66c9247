// Registry access from several threads: every call takes the mutex (LMDB write txns are serialised anyway and
// the Registry object itself is not documented as thread-safe). Lock order: this mutex, then TunnelTable's.
#pragma once

#include <mutex>
#include <utility>

#include "monitoring_proxy/registry.hpp"

namespace tunneld {

class RegistryGateway {
public:
    explicit RegistryGateway(monitoring_proxy::registry::Registry registry) : registry_(std::move(registry)) {}
    template <typename Fn>
    auto with(Fn&& fn) {
        std::lock_guard lock(mu_);
        return fn(registry_);
    }

private:
    std::mutex mu_;
    monitoring_proxy::registry::Registry registry_;
};

}  // namespace tunneld
