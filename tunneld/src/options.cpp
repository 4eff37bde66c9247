#include "options.hpp"

#include <charconv>
#include <functional>
#include <utility>

#include "monitoring_proxy/cluster_schema.hpp"

namespace tunneld {
namespace {

unsigned parse_number(const std::string& flag, const std::string& text, unsigned lo, unsigned hi) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || p != text.data() + text.size() || value < lo || value > hi) {
        throw UsageError(flag + ": \"" + text + "\" is not a number in " + std::to_string(lo) + "-" +
                         std::to_string(hi));
    }
    return value;
}

void parse_listen(const std::string& text, Options& o) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
        throw UsageError("--listen: expected ADDR:PORT, got \"" + text + "\"");
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    o.listen_host = host;
    o.listen_port = static_cast<std::uint16_t>(parse_number("--listen", text.substr(colon + 1), 1, 65535));
}

void parse_range(const std::string& text, Options& o) {
    auto dash = text.find('-');
    if (dash == std::string::npos) throw UsageError("--port-range: expected LO-HI, got \"" + text + "\"");
    auto lo = parse_number("--port-range", text.substr(0, dash), 1, 65535);
    auto hi = parse_number("--port-range", text.substr(dash + 1), 1, 65535);
    if (lo > hi) throw UsageError("--port-range: LO " + std::to_string(lo) + " is above HI " + std::to_string(hi));
    o.port_range = {static_cast<std::uint16_t>(lo), static_cast<std::uint16_t>(hi)};
}

// sshd's MaxStartups syntax: START:RATE:FULL.
void parse_max_startups(const std::string& text, Options& o) {
    const std::string flag = "--max-startups";
    auto first = text.find(':');
    auto second = first == std::string::npos ? std::string::npos : text.find(':', first + 1);
    if (second == std::string::npos) throw UsageError(flag + ": expected START:RATE:FULL, got \"" + text + "\"");
    auto start = parse_number(flag, text.substr(0, first), 1, 100000);
    auto rate = parse_number(flag, text.substr(first + 1, second - first - 1), 0, 100);
    auto full = parse_number(flag, text.substr(second + 1), 1, 100000);
    if (start > full)
        throw UsageError(flag + ": START " + std::to_string(start) + " is above FULL " + std::to_string(full));
    o.preauth.drop_start = static_cast<int>(start);
    o.preauth.drop_rate_percent = static_cast<int>(rate);
    o.preauth.full = static_cast<int>(full);
}

// Flags whose value is kept as given.
const std::pair<const char*, std::string Options::*> kTextFlags[] = {
    {"--registry", &Options::registry_flag},
    {"--host-key-dir", &Options::host_key_dir},
    {"--authorized-keys", &Options::authorized_keys},
    {"--etcd", &Options::etcd},
    {"--etcd-prefix", &Options::etcd_prefix},
    {"--etcd-cacert", &Options::etcd_cacert},
    {"--etcd-cert", &Options::etcd_cert},
    {"--etcd-key", &Options::etcd_key},
    {"--node-id", &Options::node_id},
    {"--advertise-http", &Options::advertise_http},
};

// One flag as given: "--flag", or "--flag=value" (has_inline).
struct Arg {
    std::string flag, value;
    bool has_inline = false;
};

Arg split_inline(const std::string& text) {
    Arg a{text, {}, false};
    if (auto eq = text.find('='); text.rfind("--", 0) == 0 && eq != std::string::npos)
        a = {text.substr(0, eq), text.substr(eq + 1), true};
    return a;
}

// The flags without a value; false if `a` is none of them.
bool set_switch(const Arg& a, Options& o) {
    bool* on = nullptr;
    if (a.flag == "--help" || a.flag == "-h")
        on = &o.help;
    else if (a.flag == "--version")
        on = &o.version;
    else if (a.flag == "--allow-undeclared")
        on = &o.allow_undeclared;
    if (on == nullptr) return false;
    if (a.has_inline) throw UsageError(a.flag + " takes no value");
    *on = true;
    return true;
}

// The flags with a value, which `take` fetches (inline or the next argument) only once the flag is known, so an
// unknown flag is named as such; false if `flag` is none of them.
bool set_valued(const std::string& flag, const std::function<std::string()>& take, Options& o) {
    for (const auto& [name, field] : kTextFlags) {
        if (flag != name) continue;
        o.*field = take();
        return true;
    }
    if (flag == "--listen")
        parse_listen(take(), o);
    else if (flag == "--port-range")
        parse_range(take(), o);
    else if (flag == "--keepalive")
        o.keepalive_seconds = parse_number(flag, take(), 1, 3600);
    else if (flag == "--keepalive-max")
        o.keepalive_max = parse_number(flag, take(), 1, 100);
    else if (flag == "--per-source-max-startups")
        o.preauth.per_source = static_cast<int>(parse_number(flag, take(), 1, 100000));
    else if (flag == "--max-startups")
        parse_max_startups(take(), o);
    else if (flag == "--lease-ttl")
        o.lease_ttl = parse_number(flag, take(), 2, 3600);
    else if (flag == "--user") {
        o.user = take();
        if (o.user.empty()) throw UsageError("--user needs a non-empty name");
    } else {
        return false;
    }
    return true;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args) {
    Options o;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const Arg a = split_inline(args[i]);
        auto take = [&]() -> std::string {
            if (a.has_inline) return a.value;
            if (i + 1 >= args.size()) throw UsageError(a.flag + " needs a value");
            return args[++i];
        };
        if (!set_switch(a, o) && !set_valued(a.flag, take, o))
            throw UsageError("unknown argument \"" + a.flag + "\" (see --help)");
    }
    return o;
}

void check_cluster_options(Options& o, const std::string& etcd_env, const std::string& hostname) {
    if (o.etcd.empty()) o.etcd = etcd_env;
    if (o.etcd.empty()) return;
    if (o.advertise_http.empty())
        throw UsageError("--etcd needs --advertise-http HOST:PORT (where the other proxies reach this node's nginx)");
    auto colon = o.advertise_http.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == o.advertise_http.size())
        throw UsageError("--advertise-http: expected HOST:PORT, got \"" + o.advertise_http + "\"");
    parse_number("--advertise-http", o.advertise_http.substr(colon + 1), 1, 65535);
    if (o.node_id.empty()) o.node_id = hostname;
    if (auto why = monitoring_proxy::cluster::node_id_problem(o.node_id))
        throw UsageError("--node-id: " + *why + (hostname == o.node_id ? " (the default is the host name)" : ""));
    if (o.allow_undeclared)
        throw UsageError("--allow-undeclared cannot be combined with --etcd yet: declare targets with "
                         "tunnelctl --etcd add");
    if (o.etcd_prefix.empty()) throw UsageError("--etcd-prefix must not be empty");
}

const char* usage_text() {
    return R"(Usage: tunneld [OPTIONS]

An SSH daemon that accepts only reverse port forwards (ssh -N -R ...) and records each live forward in the
monitoring-proxy registry, where the nginx module finds it.

Options:
  --listen ADDR:PORT       address to accept SSH connections on (default 0.0.0.0:22; IPv6 as [::]:22)
  --registry DIR           registry directory (default $MONITORING_PROXY_REGISTRY, else
                           /var/lib/monitoring-proxy/registry)
  --host-key-dir DIR       directory with ssh_host_*_key files (default /etc/ssh); if it holds none, an
                           ed25519 key is generated there (mode 0600)
  --authorized-keys FILE   OpenSSH authorized_keys file of keys that may connect besides the keys bound to
                           targets in the registry; options from=, permitlisten=, restrict, no-port-forwarding
                           are honoured, lines with other options are reported and skipped; re-read on SIGHUP
  --port-range LO-HI       loopback ports tunnels may use (default 20000-29999)
  --keepalive SECONDS      send a keepalive after SECONDS without traffic from the client (default 15)
  --keepalive-max N        drop a session after N unanswered keepalives (default 3)
  --allow-undeclared       let authorized_keys keys forward new target names (-R NAME:80:...); the name is
                           then declared in the registry and bound to that key
  --user NAME              accept only this login name (default: any)
  --per-source-max-startups N
                           unauthenticated connections one address may hold (default 10); hosts behind one
                           NAT address share it
  --max-startups START:RATE:FULL
                           from START unauthenticated connections on, refuse new ones with RATE % probability,
                           rising linearly to all at FULL (default 64:30:256; START=FULL: a plain cap)
  --etcd URL[,URL...]      cluster mode (default $MONITORING_PROXY_ETCD; without either: single-node, nothing
                           contacts etcd): this node keeps an etcd lease and publishes its live tunnels there
  --etcd-prefix P          the cluster's key prefix (default /monitoring-proxy/)
  --etcd-cacert F, --etcd-cert F, --etcd-key F
                           TLS for https:// etcd endpoints: CA to trust, client certificate and its key
  --node-id ID             this node's name in the cluster (default: the host name; [a-z0-9][a-z0-9._-]*,
                           at most 63)
  --advertise-http HOST:PORT
                           where the other proxies reach this node's nginx (required with --etcd)
  --lease-ttl SECONDS      the node lease's TTL: a dead node's tunnels leave the cluster after it (default 10)
  --help                   show this text
  --version                print the version

Forwards:
  ssh -N -R NAME:80:localhost:9100 tunneld-host    named: serve target NAME on a port tunneld picks
  ssh -N -R 20001:localhost:9100 tunneld-host      numbered: the declared target whose fixed port is 20001
  ssh -N -R 0:localhost:9100 tunneld-host          the one target this key is bound to
Listeners are always on 127.0.0.1. Sessions, -L, -D and streamlocal forwards are refused.

Signals: SIGHUP re-reads --authorized-keys; SIGTERM/SIGINT close all sessions and remove their forwards from
the registry.
)";
}

}  // namespace tunneld
