// The registry as its writers (tunnelctl, tunneld) and its inspectors see it. The nginx module's hot path uses
// reader.hpp instead.
#pragma once

#include "monitoring_proxy/lmdb.hpp"
#include "monitoring_proxy/registry_schema.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace monitoring_proxy::registry {

// A refused change (unknown target, duplicate, invalid value): tunnelctl exits 2 with its message.
class RefusedChange : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The registry exists but cannot be used as it is (wrong schema version, not a registry, bad permissions).
class RegistryError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// No registry at the path, and the open may not create one (read-only, or create == false).
class MissingRegistry : public RegistryError {
public:
    using RegistryError::RegistryError;
};

inline constexpr std::size_t kDefaultMapSize = std::size_t{64} << 20;

struct OpenOptions {
    std::string dir = kDefaultDir;
    // Create missing environments and apply the permission policy. Without it (and whenever read_only), open()
    // creates no environment and changes no owner, group or mode; a missing DIR is MissingRegistry, a missing
    // DIR/live means no live state.
    bool create = true;
    bool read_only = false;      // open both environments MDB_RDONLY (still needs lock.mdb write access)
    std::size_t map_size = 0;    // 0: kDefaultMapSize or what the file already has, whichever is larger
    std::string group;           // the registry's group; empty: see resolve_group in permissions.hpp
    bool live = true;            // also open DIR/live
    bool migrate = false;        // upgrade a declared environment of schema version kSchemaVersion - 1 in place
    bool recreate_other_live = false;  // a live environment of another schema version is recreated empty (tunneld)
};

// --registry DIR, else $MONITORING_PROXY_REGISTRY, else kDefaultDir.
std::string resolve_dir(const std::string& flag_value);

struct SnapshotEntry {
    std::string name;
    std::optional<TargetRecord> target;  // nullopt: live tunnel whose target was removed meanwhile
    std::optional<TunnelRecord> tunnel;  // nullopt: declared, not connected
};

// A record a listing skipped because it does not decode (written by a newer version, or damaged): the pages
// that asked for skipping show the rest and report these, instead of failing whole.
struct UnreadableRecord {
    std::string kind;  // "target", "tunnel", "cluster node", "cluster tunnel", "invitation"
    std::string name;
    std::string error;
};

// One write transaction on the declared environment.
class DeclaredTxn {
public:
    std::optional<TargetRecord> get(std::string_view name);
    // Inserts or replaces; keeps key_targets in step. Validates name, labels, paths (RefusedChange).
    void put(std::string_view name, const TargetRecord& record);
    bool remove(std::string_view name);
    std::vector<std::string> names();
    std::vector<std::string> targets_for_key(std::string_view fingerprint);
    std::optional<std::string> target_with_fixed_port(std::uint16_t port);

    // Join tokens (invites/<name>); the target of the same name is declared separately.
    std::optional<InviteRecord> get_invite(std::string_view name);
    void put_invite(std::string_view name, const InviteRecord& record);

private:
    friend class Registry;
    DeclaredTxn(lmdb::Txn& txn, MDB_dbi targets, MDB_dbi key_targets, MDB_dbi fixed_ports, MDB_dbi invites)
        : txn_(txn), targets_(targets), key_targets_(key_targets), fixed_ports_(fixed_ports), invites_(invites) {}
    lmdb::Txn& txn_;
    MDB_dbi targets_, key_targets_, fixed_ports_, invites_;
};

// One write transaction on the live environment.
class LiveTxn {
public:
    std::optional<TunnelRecord> get_tunnel(std::string_view name);
    void put_tunnel(std::string_view name, const TunnelRecord& record);
    // Removes the tunnel only if `instance` still owns it (a newer session may have taken it over).
    bool remove_tunnel(std::string_view name, std::uint64_t instance);
    void put_instance(std::uint64_t id, const InstanceRecord& record);
    void remove_instance(std::uint64_t id);
    void add_counter(std::string_view key, std::uint64_t delta);
    void set_counter(std::string_view key, std::uint64_t value);

private:
    friend class Registry;
    LiveTxn(lmdb::Txn& txn, MDB_dbi tunnels, MDB_dbi instances, MDB_dbi counters)
        : txn_(txn), tunnels_(tunnels), instances_(instances), counters_(counters) {}
    lmdb::Txn& txn_;
    MDB_dbi tunnels_, instances_, counters_;
};

// What another node of the cluster holds, as the mirror lists it from etcd.
struct ClusterView {
    std::map<std::string, ClusterTunnelRecord> tunnels;  // held by OTHER nodes only
    std::map<std::string, ClusterNodeRecord> nodes;      // every node, this one included
};

// One write transaction on the live environment's cluster view (registry_schema.hpp). The mirror runs one per
// etcd list (clear_view, then every record) or watch batch (puts and removals in event order), setting the
// applied revision in the same transaction.
class ClusterTxn {
public:
    // Validate the name, the node id and the endpoint (RefusedChange).
    void put_tunnel(std::string_view name, const ClusterTunnelRecord& record);
    bool remove_tunnel(std::string_view name);
    void put_node(std::string_view id, const ClusterNodeRecord& record);
    bool remove_node(std::string_view id);
    void set_state(const ClusterStateRecord& state);
    bool remove_state();
    std::optional<ClusterTunnelRecord> get_tunnel(std::string_view name);
    std::optional<ClusterStateRecord> state();
    // Empties cluster_tunnels and cluster_nodes; the state record stays.
    void clear_view();

private:
    friend class Registry;
    ClusterTxn(lmdb::Txn& txn, MDB_dbi meta, MDB_dbi tunnels, MDB_dbi nodes)
        : txn_(txn), meta_(meta), tunnels_(tunnels), nodes_(nodes) {}
    lmdb::Txn& txn_;
    MDB_dbi meta_, tunnels_, nodes_;
};

class Registry {
public:
    static Registry open(const OpenOptions& options);
    Registry(Registry&&) noexcept = default;
    Registry& operator=(Registry&&) noexcept = default;

    const std::string& dir() const noexcept { return dir_; }

    // Each runs `fn` inside one write transaction, committed when fn returns, aborted if it throws.
    void update_declared(const std::function<void(DeclaredTxn&)>& fn);
    void update_live(const std::function<void(LiveTxn&)>& fn);
    // The cluster view (needs a writable open with live state). The three below are shorthands for it.
    void update_cluster(const std::function<void(ClusterTxn&)>& fn);
    // After an etcd list: the view becomes exactly `view`, with `state`, in one transaction.
    void replace_cluster_view(const ClusterView& view, const ClusterStateRecord& state);
    void set_cluster_state(const ClusterStateRecord& state);
    // Back to single-node: the view and the state record removed (the matching removal of all the above).
    void leave_cluster();

    // Reads, each in its own short read transaction.
    std::optional<TargetRecord> get_target(std::string_view name);
    std::vector<std::string> targets_for_key(std::string_view fingerprint);
    std::optional<TunnelRecord> get_tunnel(std::string_view name);
    std::vector<SnapshotEntry> snapshot();  // declared and live, sorted by name
    std::map<std::uint16_t, std::string> fixed_ports();  // declared fixed port -> its target (the index)
    std::map<std::string, std::uint64_t> counters();
    std::map<std::uint64_t, InstanceRecord> instances();
    // Every invitation, open or not, by target name (empty for a read-only registry made before invitations).
    std::map<std::string, InviteRecord> invites();
    // The cluster view: nullopt / empty in single-node mode.
    std::optional<ClusterStateRecord> cluster_state();
    std::optional<ClusterTunnelRecord> get_cluster_tunnel(std::string_view name);
    ClusterView cluster_view();

    // tunneld at start: removes tunnels (and instance records) whose owning process is gone, and everything
    // recorded before the last reboot (boot id). Returns the names of the swept tunnels.
    std::vector<std::string> sweep_dead_instances();

    // The declared environment's schema version before open(): kSchemaVersion - 1 when migrate upgraded it.
    std::uint32_t opened_version() const noexcept { return opened_version_; }

    // Things open() repaired and its caller should log (e.g. a corrupt live environment recreated).
    const std::vector<std::string>& notices() const noexcept { return notices_; }

private:
    Registry() = default;
    std::string dir_;
    std::vector<std::string> notices_;
    std::uint32_t opened_version_ = kSchemaVersion;
    lmdb::Env declared_, live_;
    MDB_dbi meta_{}, targets_{}, key_targets_{}, fixed_ports_{};
    std::optional<MDB_dbi> invites_;  // absent only when opened read-only before any writer created it
    MDB_dbi live_meta_{}, tunnels_{}, instances_{}, counters_{};
    std::optional<MDB_dbi> cluster_tunnels_, cluster_nodes_;  // absent when read-only before a writer made them
};

// Is the process an InstanceRecord describes still running (same pid and same start time)?
bool instance_alive(const InstanceRecord& record);
// This process's InstanceRecord.
InstanceRecord current_instance();
// A random id for a new tunneld instance.
std::uint64_t new_instance_id();

}  // namespace monitoring_proxy::registry
