// tunnelctl --etcd: the same commands on the cluster's declared targets in etcd (cluster_schema.hpp).
#pragma once

#include <string>

#include "cli.hpp"
#include "monitoring_proxy/registry.hpp"

namespace monitoring_proxy::tunnelctl {

struct EtcdOptions {
    std::string endpoints;  // --etcd or $MONITORING_PROXY_ETCD; empty: single-node
    std::string prefix = "/monitoring-proxy/";
    std::string cacert, cert, key;
};

using Handler = int (*)(registry::Registry&, Args&);

// Runs `handler` (a command written for the local registry) on the cluster: the declared targets are read at one
// etcd revision into a scratch registry, the command runs there with all its checks, and what it changed is
// written back in ONE etcd transaction that holds only if no target changed since that revision (else it is
// read and run again, a few times). `ls` is the cluster's own listing (with the node holding each tunnel).
int run_on_etcd(const EtcdOptions& etcd, const std::string& command, Handler handler, bool read_only, Args args);

}  // namespace monitoring_proxy::tunnelctl
