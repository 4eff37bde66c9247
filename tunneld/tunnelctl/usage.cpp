#include "cli.hpp"

namespace monitoring_proxy::tunnelctl {

const char* const kUsage = R"(usage: tunnelctl [GLOBAL OPTIONS] COMMAND [ARGS]

Manage the targets of a monitoring-proxy registry: which hosts may open tunnels, with which keys, and the labels
Prometheus sees for them. Every change is one transaction: it happens entirely or not at all. show and ls only
read: they never create a registry nor change its owner, group or modes; the other commands create a missing one.

Commands:
  init                  create the registry if it does not exist, and apply its permission policy (see
                        --registry-group); changes no target
  add NAME [--port N] [--key PUBKEY | --key-file FILE]... [--label K=V]... [--path PREFIX]...
           [--metrics-path PATH]
                        declare a target. --port fixes its tunnel port (otherwise tunneld picks one);
                        --key/--key-file bind OpenSSH public keys (only they may serve NAME); --label adds a
                        Prometheus label; --path restricts the URL paths served (default: all);
                        --metrics-path is what discovery tells Prometheus to scrape (default /metrics)
  rm NAME               remove a target (a live tunnel stops being served at once)
  show NAME [--json]    one target with its tunnel state
  ls [--json]           every declared and live target: state, listener, client, since, labels
  counters [--json]     tunneld's counters (sessions, refusals by reason, connects per tunnel...)
  migrate               upgrade a registry of the previous schema version in place (stop tunneld first;
                        keeps every target, key and label; running it again changes nothing)
  label NAME K=V...     set labels
  label NAME --rm K...  remove labels
  key add NAME PUBKEY   bind a public key ("ssh-ed25519 AAAA... comment") to NAME
  key rm NAME FINGERPRINT
                        unbind a key (fingerprint as `ssh-keygen -lf` prints it: SHA256:...)
  invite NAME [--ttl 24h] [--uses 1] [--label K=V]... [--path PREFIX]... [--json]
         [--proxy HOST[:PORT]] [--host-key-dir DIR] [--host-dir DIR] [--user USER] [--exporter HOST:PORT]
                        declare NAME (or reuse the declared one, adding the labels and paths) with a join token
                        and print the host's setup: key, token file, known_hosts pinning this proxy, the ssh -N -R
                        line and a systemd unit with autossh, and the same setup for dropbear's dbclient and
                        PuTTY's plink. The first unknown key that presents the token is bound to NAME (one key
                        takes one use). --ttl: how long the token works (N with s, m, h or d; default 24h, at most
                        365d); --uses: how many keys it may bind (1-1000, default 1); --proxy: the address hosts
                        connect to (default: this host name, port 22); --host-key-dir: tunneld's host keys, read
                        from ssh_host_*_key.pub (default /etc/ssh); --host-dir: the directory on the host for key,
                        token and known_hosts (default /etc/monitoring-proxy); --user: the login name (default
                        monitoring); --exporter: what the tunnel serves (default localhost:9100); --json: the same
                        as data. The token is printed only now; inviting NAME again replaces it.
  invite rm NAME        revoke NAME's invitation (a later use is refused and logged as revoked)
  invites [--json]      every invitation: state (open, spent, expired, revoked), uses left, expiry, and which
                        keys used it when; never a token
  import-targets FILE   import the original image's targets file ("localhost:20001 web1" per line, '#'
                        comments). The file is authoritative for what it imported: targets it no longer lists are
                        removed, others keep their keys and labels. Importing the same file twice changes nothing.

Global options:
  --registry DIR        registry directory (default: $MONITORING_PROXY_REGISTRY, else
                        /var/lib/monitoring-proxy/registry, which tunnelctl then names on stderr)
  --registry-group NAME the registry's group: the group nginx workers run as. Commands that change something
                        give it to the registry's files (default: $MONITORING_PROXY_REGISTRY_GROUP, else the
                        group an existing registry already has, else www-data)
  --map-size MIB        grow the registry's maximum size to MIB mebibytes (default 64; never shrinks)
  --etcd URL[,URL...]   cluster mode (default: $MONITORING_PROXY_ETCD): add, rm, label, key, show, ls and
                        import-targets work on the cluster's declared targets in etcd (each change one etcd
                        transaction, refused if another changed the targets meanwhile, then retried); ls shows
                        the proxy holding each tunnel (JSON field "node"). No local registry is opened. init,
                        migrate, counters, invite and invites are per node: they refuse --etcd
  --etcd-prefix P       the cluster's key prefix in etcd (default /monitoring-proxy/)
  --etcd-cacert FILE, --etcd-cert FILE, --etcd-key FILE
                        TLS for https:// endpoints: the CA to trust, and a client certificate with its key
  -h, --help            show this help
  --version             show the version

Exit status: 0 success, 1 usage error, 2 refused change (unknown target, duplicate, invalid value),
3 registry unusable (missing for show/ls, permissions, corruption, schema version).
)";

}  // namespace monitoring_proxy::tunnelctl
