// Registry access from several threads. Two doors:
// - with(): reads, live writes (tunnels, counters, instances, the cluster view) and anything that must agree with
//   the tunnel table, under one mutex. Lock order: this mutex, then TunnelTable's.
// - with_declared(): writes to the declared environment (self-registration, enrolment, the cluster mirror's
//   targets). Those commits are fsynced; under the mutex every worker's live write would wait for the disk.
//   They take no tunneld lock, which is safe because:
//   * Registry is immutable after open(): its methods only read its members (environment handles, database
//     handles opened and committed in open()), each runs its own transaction, and none caches anything.
//   * LMDB environment handles may be used from any thread; environments are opened MDB_NOTLS, so read
//     transactions are not tied to a thread; each write transaction begins, runs and commits in one call on one
//     thread; and LMDB lets one write transaction per environment run at a time (its writer lock, shared with
//     tunnelctl), so declared writers serialise there and never wait for live ones.
//   * A declared write decides from what its own transaction reads (an enrolment takes a token use, a
//     self-registration keeps a record declared meanwhile), so nothing outside it needs to hold still.
//   A with_declared() callback touches only the declared environment and never calls with() (and no with()
//   callback writes the declared environment): the two never wait for each other.
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
    template <typename Fn>
    auto with_declared(Fn&& fn) {
        return fn(registry_);
    }

private:
    std::mutex mu_;
    monitoring_proxy::registry::Registry registry_;
};

}  // namespace tunneld
