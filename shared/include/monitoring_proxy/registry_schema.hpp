// The registry schema: the contract between tunneld/tunnelctl (writers) and the nginx module (reader).
//
// A registry is a directory holding two LMDB environments:
//
//   DIR/            the *declared* environment (data.mdb, lock.mdb), durable: every commit is fsynced.
//                   Written by tunnelctl (and by tunneld when a host self-registers).
//     meta          "schema_version" -> u32 LE (kSchemaVersion)
//     targets       target name      -> TargetRecord (encoding below)
//     key_targets   key fingerprint  -> target name  (MDB_DUPSORT; index of TargetRecord::key_fingerprints)
//     fixed_ports   port (u16 BE)    -> target name  (index of TargetRecord::fixed_port, one target per port)
//     invites       target name      -> InviteRecord (join tokens of `tunnelctl invite`). Added without a schema
//                   version bump: binaries that predate it never open it, so they simply ignore it; readers
//                   treat a registry without it as one without invitations.
//
//   DIR/live/       the *live* environment, written by tunneld only, opened with MDB_NOSYNC: a record of
//                   connections that exist right now needs no fsync (1,000 reconnects must land within 2 s),
//                   and it survives a crash of tunneld (the page cache keeps it). After a reboot it is
//                   meaningless: tunneld compares the stored boot id and recreates it.
//     meta          "schema_version" -> u32 LE, "boot_id" -> the kernel's boot id text
//     tunnels       target name      -> TunnelRecord
//     instances     instance id (u64 LE) -> InstanceRecord (the tunneld process owning tunnels)
//     counters      counter key      -> u64 LE (tunneld's counters, exported by the module's metrics page):
//                   the key is a TunneldCounter id (u8) followed by the value of its one label, if it has one
//                   (kTunneldCounters below says which); no string grammar to parse.
//     cluster_tunnels  target name -> ClusterTunnelRecord: tunnels that OTHER nodes of the cluster hold, mirrored
//                   from etcd by tunneld (this node's own stay in `tunnels`). The module proxies a request for
//                   such a target one hop to the holding node's nginx.
//     cluster_nodes    node id   -> ClusterNodeRecord: every node of the cluster (this one included).
//     meta "cluster"   -> ClusterStateRecord: this node's id, the etcd connection state, the last applied
//                   revision. Absent (and both databases empty or missing) = single-node mode.
//                   The cluster databases and the meta key were added without a schema version bump, like
//                   `invites`: binaries that predate them never open them; a registry without them is a
//                   single-node one. Written through Registry::update_cluster (one transaction per etcd list or
//                   watch batch); Registry::leave_cluster removes all of it.
//
// Both environments carry the same schema version. A process that opens a registry whose version differs
// from kSchemaVersion fails with a message naming both versions; nothing is migrated implicitly. Versions:
//   1  the first release;
//   2  declared `fixed_ports` index (tunneld finds a numbered forward's target, and keeps fixed ports free,
//      without reading every target); live tunnel records carry the forward's own address; counter keys are
//      typed (kTunneldCounters).
// A version-1 declared environment is upgraded in place, keeping everything, by `tunnelctl migrate`
// (OpenOptions::migrate). Live state is only about connections that exist now: tunneld recreates a live
// environment of another version empty (OpenOptions::recreate_other_live).
//
// Value encoding (all records): byte 0 is the record's encoding version (kRecordVersion, or
// kTunnelRecordVersion for tunnel records); then the fields in the order listed, integers little-endian and fixed
// width, strings as u16 LE length + bytes, lists as u16 LE count + items. Decoders check every length against the
// value size and reject trailing bytes, so a corrupt value is an error, never an overread. Unknown record
// versions are rejected.
//
// Permissions (see README "Registry permissions"): directories are 2750 owner:GROUP (setgid so files inherit
// GROUP), data.mdb 0640, lock.mdb 0660. GROUP is the group nginx workers run as (--registry-group); readers open
// data.mdb read-only but LMDB needs them to write lock.mdb (reader slots).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace monitoring_proxy::registry {

inline constexpr std::uint32_t kSchemaVersion = 2;
inline constexpr std::uint8_t kRecordVersion = 1;
// Tunnel records: version 2 appends `address`; version 1 records (written by older tunnelds) still decode, as
// 127.0.0.1.
inline constexpr std::uint8_t kTunnelRecordVersion = 2;
inline constexpr std::uint32_t kLoopbackAddress = 0x7f000001;  // 127.0.0.1, host byte order

inline constexpr const char* kDefaultDir = "/var/lib/monitoring-proxy/registry";
inline constexpr const char* kDirEnvVar = "MONITORING_PROXY_REGISTRY";
inline constexpr const char* kGroupEnvVar = "MONITORING_PROXY_REGISTRY_GROUP";
inline constexpr const char* kLiveSubdir = "live";

// Database names (LMDB named databases).
inline constexpr const char* kDbMeta = "meta";
inline constexpr const char* kDbTargets = "targets";
inline constexpr const char* kDbKeyTargets = "key_targets";
inline constexpr const char* kDbFixedPorts = "fixed_ports";
inline constexpr const char* kDbTunnels = "tunnels";
inline constexpr const char* kDbInstances = "instances";
inline constexpr const char* kDbCounters = "counters";
inline constexpr const char* kDbInvites = "invites";
inline constexpr const char* kDbClusterTunnels = "cluster_tunnels";
inline constexpr const char* kDbClusterNodes = "cluster_nodes";

inline constexpr const char* kMetaSchemaVersion = "schema_version";
inline constexpr const char* kMetaBootId = "boot_id";
inline constexpr const char* kMetaCluster = "cluster";

// How a target came to be declared.
enum class Origin : std::uint8_t {
    kTunnelctl = 0,      // tunnelctl add
    kImport = 1,         // tunnelctl import-targets (the original image's /etc/monitoring/targets)
    kSelfRegistered = 2  // tunneld --allow-undeclared: first key to claim a new name owns it
};

// targets/<name>
struct TargetRecord {
    std::uint16_t fixed_port = 0;                                   // 0: tunneld picks one in its range
    std::int64_t created_unix = 0;                                  // seconds
    Origin origin = Origin::kTunnelctl;
    std::string metrics_path;                                       // empty: "/metrics"
    std::vector<std::pair<std::string, std::string>> labels;        // sorted by name, unique
    std::vector<std::string> key_fingerprints;                      // "SHA256:<base64>", sorted, unique
    std::vector<std::string> path_prefixes;                         // empty: every path allowed
    bool operator==(const TargetRecord&) const = default;
};

// One use of a join token: when, and which key it bound.
struct InviteUse {
    std::int64_t when_unix = 0;
    std::string key_fingerprint;
    bool operator==(const InviteUse&) const = default;
};

// invites/<name>: a join token for the declared target <name> (`tunnelctl invite`). Only the SHA-256 of the
// token's secret is stored; the token itself is printed once.
struct InviteRecord {
    std::string secret_sha256;      // 32 bytes
    std::int64_t created_unix = 0;
    std::int64_t expires_unix = 0;  // refused from this second on
    std::uint16_t uses_left = 0;
    bool revoked = false;           // `tunnelctl invite rm`: kept, so that a later use is logged as revoked
    std::vector<InviteUse> uses;    // oldest first
    bool operator==(const InviteRecord&) const = default;
};

// "open" (usable now), "revoked", "expired" or "spent".
inline const char* invite_state(const InviteRecord& r, std::int64_t now_unix) {
    if (r.revoked) return "revoked";
    if (now_unix >= r.expires_unix) return "expired";
    if (r.uses_left == 0) return "spent";
    return "open";
}

// live tunnels/<name>
struct TunnelRecord {
    std::uint16_t port = 0;               // tunneld listens on address:port
    std::uint64_t instance = 0;           // owning tunneld instance (instances/<id>)
    std::int64_t connected_unix_ms = 0;
    std::string client_address;           // "203.0.113.7:51234"
    std::string key_fingerprint;
    // IPv4 loopback address (host byte order) of this forward's listener: one of its own for every forward
    // lifetime, so no connection to an ended forward (nginx keepalive caches match on the socket address) can
    // ever be taken for the forward that follows it on the same port. See README "Security".
    std::uint32_t address = kLoopbackAddress;
    bool operator==(const TunnelRecord&) const = default;
};

// Where a cluster node's nginx listens for hops: an IPv4 address (host byte order) and a port, so the module
// connects without resolving a name on the request path (the writer resolves --advertise-http once).
struct HttpEndpoint {
    std::uint32_t address = 0;
    std::uint16_t port = 0;
    bool operator==(const HttpEndpoint&) const = default;
};

// live cluster_tunnels/<name>: a tunnel another node holds.
struct ClusterTunnelRecord {
    std::string node_id;                  // the holding node ([a-z0-9][a-z0-9._-]*, at most 63)
    HttpEndpoint http;                    // that node's nginx
    std::int64_t connected_unix_ms = 0;
    std::string key_fingerprint;
    std::string client_address;           // the host's address as the holding node saw it
    bool operator==(const ClusterTunnelRecord&) const = default;
};

// live cluster_nodes/<id>
struct ClusterNodeRecord {
    HttpEndpoint http;
    std::uint32_t tunnels_held = 0;
    std::int64_t last_seen_unix_ms = 0;   // the last time etcd showed this node's lease alive
    bool alive = false;                   // its lease exists in etcd
    bool operator==(const ClusterNodeRecord&) const = default;
};

enum class EtcdState : std::uint8_t {
    kConnected = 0,
    kDegraded = 1,  // etcd unreachable: serving what this node last knew
};

// live meta "cluster"
struct ClusterStateRecord {
    std::string node_id;                  // this node (the value of the Monitoring-Proxy-Hop header it sends)
    EtcdState etcd = EtcdState::kConnected;
    std::int64_t etcd_since_unix_ms = 0;  // when `etcd` last changed
    std::int64_t applied_revision = 0;    // the last etcd revision written into this registry
    bool operator==(const ClusterStateRecord&) const = default;
};

// live instances/<id>
struct InstanceRecord {
    std::int32_t pid = 0;
    std::uint64_t start_ticks = 0;        // /proc/<pid>/stat field 22: tells a live pid from a reused one
    std::int64_t started_unix_ms = 0;
    bool operator==(const InstanceRecord&) const = default;
};

// tunneld's counters: what tunneld writes and the module renders as monitoring_proxy_tunneld_NAME (per-tunnel
// ones as monitoring_proxy_tunnel_NAME{tunnel=...}, joined with the declared targets). Ids are stored: never
// renumber one, only add.
enum class TunneldCounter : std::uint8_t {
    kSessions = 1,
    kAuthAccepted = 2,
    kAuthFailures = 3,
    kForwards = 4,
    kForwardsRefused = 5,
    kTakeoverAttempts = 6,
    kTakeovers = 7,
    kKeepaliveDrops = 8,
    kConnects = 9,
    kChannelsRefused = 10,
    kGlobalRequestsRefused = 11,
    kConnectionsRefused = 12,
    kEnrolments = 13,
    kEnrolmentsRefused = 14,
    kAcceptPauses = 15,
    kRelaysRefused = 16,
    kRelaysAbandoned = 17,
};

enum class CounterLabel : std::uint8_t { kNone, kReason, kType, kTunnel };

struct CounterSpec {
    TunneldCounter id;
    const char* name;  // Prometheus name without the monitoring_proxy_tunneld_ prefix
    CounterLabel label;
    const char* help;
};

inline constexpr CounterSpec kTunneldCounters[] = {
    {TunneldCounter::kSessions, "sessions_total", CounterLabel::kNone, "SSH sessions accepted by tunneld."},
    {TunneldCounter::kAuthAccepted, "auth_accepted_total", CounterLabel::kNone, "Successful SSH authentications."},
    {TunneldCounter::kAuthFailures, "auth_failures_total", CounterLabel::kReason,
     "Failed SSH authentications, by reason."},
    {TunneldCounter::kForwards, "forwards_total", CounterLabel::kNone, "Forward requests accepted."},
    {TunneldCounter::kForwardsRefused, "forwards_refused_total", CounterLabel::kReason,
     "Refused forward requests, by reason."},
    {TunneldCounter::kTakeoverAttempts, "takeover_attempts_total", CounterLabel::kNone,
     "Forward requests for a name bound to another key."},
    {TunneldCounter::kTakeovers, "takeovers_total", CounterLabel::kTunnel,
     "Live tunnels replaced by a newer session of an allowed key."},
    {TunneldCounter::kKeepaliveDrops, "keepalive_drops_total", CounterLabel::kNone,
     "Sessions dropped after unanswered keepalives."},
    {TunneldCounter::kConnects, "connects_total", CounterLabel::kTunnel,
     "Tunnels opened for the target since tunneld's registry was created."},
    {TunneldCounter::kChannelsRefused, "channels_refused_total", CounterLabel::kType,
     "Refused channel requests (shell, exec, direct-tcpip...), by kind."},
    {TunneldCounter::kGlobalRequestsRefused, "global_requests_refused_total", CounterLabel::kNone,
     "Refused global requests other than tcpip-forward."},
    {TunneldCounter::kConnectionsRefused, "connections_refused_total", CounterLabel::kReason,
     "SSH connections closed before authentication, by reason."},
    {TunneldCounter::kEnrolments, "enrolments_total", CounterLabel::kNone,
     "Keys bound to a target by a join token (tunnelctl invite)."},
    {TunneldCounter::kEnrolmentsRefused, "enrolments_refused_total", CounterLabel::kReason,
     "Join tokens refused, by reason."},
    {TunneldCounter::kAcceptPauses, "accept_pauses_total", CounterLabel::kNone,
     "Times tunneld ran out of file descriptors and paused accepting SSH connections."},
    {TunneldCounter::kRelaysRefused, "relays_refused_total", CounterLabel::kReason,
     "Scrape connections closed at once because their session holds its maximum of relays."},
    {TunneldCounter::kRelaysAbandoned, "relays_abandoned_total", CounterLabel::kReason,
     "Relays ended because the scraper or the client gave up on them, by reason."},
};

inline constexpr const char* counter_label_name(CounterLabel label) {
    switch (label) {
    case CounterLabel::kReason: return "reason";
    case CounterLabel::kType: return "type";
    case CounterLabel::kTunnel: return "tunnel";
    case CounterLabel::kNone: break;
    }
    return "";
}

}  // namespace monitoring_proxy::registry
