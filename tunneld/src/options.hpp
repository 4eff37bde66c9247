// tunneld's command line. Pure parsing: usage errors throw UsageError with a message naming the flag.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "policy/forward_policy.hpp"
#include "policy/preauth_admission.hpp"

namespace tunneld {

class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Options {
    std::string listen_host = "0.0.0.0";
    std::uint16_t listen_port = 22;
    std::string registry_flag;  // empty: $MONITORING_PROXY_REGISTRY or the default
    std::string host_key_dir = "/etc/ssh";
    std::string authorized_keys;  // empty: registry-bound keys only
    PortRange port_range;         // 20000-29999
    unsigned keepalive_seconds = 15;
    unsigned keepalive_max = 3;
    bool allow_undeclared = false;
    std::string user;  // empty: any login name
    PreauthLimits preauth;  // --per-source-max-startups, --max-startups
    // Cluster mode (README "Architecture", cluster): all empty without --etcd.
    std::string etcd, etcd_prefix = "/monitoring-proxy/", etcd_cacert, etcd_cert, etcd_key;
    std::string node_id, advertise_http;
    unsigned lease_ttl = 10;
    bool help = false;
    bool version = false;
};

// Parses argv[1..]; accepts "--flag VALUE" and "--flag=VALUE".
Options parse_options(const std::vector<std::string>& args);

const char* usage_text();

// With --etcd (or `etcd_env`, $MONITORING_PROXY_ETCD, when no --etcd): --advertise-http is required, the node id
// defaults to `hostname` and must be valid, --allow-undeclared is refused. UsageError naming the flag.
void check_cluster_options(Options& o, const std::string& etcd_env, const std::string& hostname);

}  // namespace tunneld
