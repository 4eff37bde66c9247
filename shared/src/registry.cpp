#include "monitoring_proxy/registry.hpp"

#include "monitoring_proxy/clock.hpp"

#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/names.hpp"
#include "listing.hpp"
#include "permissions.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace monitoring_proxy::registry {
namespace {

constexpr unsigned kMaxDbs = 8;

std::string boot_id() {
    std::ifstream f("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(f, id);
    return id;
}

using monitoring_proxy::unix_now_ms;

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); 0 if the process does not exist.
std::uint64_t start_ticks_of(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(f, line)) return 0;
    auto close_paren = line.rfind(')');  // the command name may contain spaces and parentheses
    if (close_paren == std::string::npos) return 0;
    std::istringstream rest(line.substr(close_paren + 2));
    std::string field;
    for (int i = 3; i <= 22 && rest >> field; ++i)
        if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
    return 0;
}

bool exists(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT) return false;
    throw RegistryError("cannot access " + path + ": " + std::strerror(errno));
}

// For opens that must not create one: the registry at `dir` exists (its declared environment does).
void require_existing(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
        throw RegistryError("registry path " + dir + " exists and is not a directory");
    if (!exists(dir + "/" + lmdb::kDataFile))
        throw MissingRegistry("no registry at " + dir + " (no " + lmdb::kDataFile + " there)");
}

lmdb::Env open_env(const std::string& path, const OpenOptions& o, unsigned extra_flags) {
    unsigned flags = (o.read_only ? MDB_RDONLY : 0u) | extra_flags;
    const bool had_lock_file = exists(path + "/" + lmdb::kLockFile);
    lmdb::Env env(path, flags, 0, kMaxDbs, 0640);
    if (!had_lock_file) adopt_new_lock_file(path);
    // Grow (never shrink) the map to what was asked for; readers adopt it through MDB_MAP_RESIZED.
    std::size_t want = o.map_size ? o.map_size : kDefaultMapSize;
    if (!o.read_only && env.map_size() < want)
        lmdb::check(mdb_env_set_mapsize(env.get(), want), path, "cannot set the map size");
    return env;
}

// Does the live environment carry kSchemaVersion (or none yet)?
bool live_schema_current(lmdb::Env& env, const std::string& path) {
    lmdb::Txn txn(env, MDB_RDONLY);
    auto meta = txn.open_db(kDbMeta);
    auto tunnels = txn.open_db(kDbTunnels);
    if (!meta || !tunnels) return true;
    try {
        detail::check_schema(txn, *meta, *tunnels, false, path);
    } catch (const detail::SchemaMismatch&) {
        return false;
    }
    return true;
}

bool corrupt_code(int code) {
    return code == MDB_INVALID || code == MDB_CORRUPTED || code == MDB_VERSION_MISMATCH || code == MDB_PAGE_NOTFOUND;
}

std::vector<std::string> cursor_keys(lmdb::Txn& txn, MDB_dbi dbi) {
    std::vector<std::string> out;
    lmdb::Cursor c(txn, dbi);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT_NODUP)) out.emplace_back(lmdb::to_view(k));
    return out;
}

// fixed_ports keys: big-endian, so a cursor walks them in port order.
std::string port_key(std::uint16_t port) {
    return std::string{static_cast<char>(port >> 8), static_cast<char>(port & 0xff)};
}

std::uint16_t port_of_key(std::string_view key) {
    if (key.size() != 2) throw DecodeError("fixed_ports key: " + std::to_string(key.size()) + " bytes, expected 2");
    return static_cast<std::uint16_t>((static_cast<unsigned char>(key[0]) << 8) | static_cast<unsigned char>(key[1]));
}

// Schema 1 -> 2: the fixed_ports index, built from the targets in the transaction that raises the version.
void build_fixed_port_index(lmdb::Txn& txn, MDB_dbi targets, MDB_dbi fixed_ports, const std::string& dir) {
    lmdb::Cursor c(txn, targets);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT)) {
        const std::uint16_t port = decode_target(lmdb::to_view(v)).fixed_port;
        if (port == 0) continue;
        const std::string name(lmdb::to_view(k));
        if (auto holder = txn.get(fixed_ports, port_key(port)); holder && *holder != name)
            throw RegistryError("registry " + dir + ": targets \"" + std::string(*holder) + "\" and \"" + name +
                                "\" both have fixed port " + std::to_string(port) + "; give one another port first");
        txn.put(fixed_ports, port_key(port), name);
    }
}

// Normalises and validates a record before it is stored: sorted, unique, every rule checked.
void normalise(std::string_view name, TargetRecord& r) {
    if (auto e = check_target_name(name); !e.empty()) throw RefusedChange(e);
    std::sort(r.labels.begin(), r.labels.end());
    for (std::size_t i = 0; i < r.labels.size(); ++i) {
        if (auto e = check_label_name(r.labels[i].first); !e.empty()) throw RefusedChange(e);
        if (r.labels[i].first == "tunnel")
            throw RefusedChange("label \"tunnel\" is set by monitoring-proxy to the target's name");
        if (auto e = check_label_value(r.labels[i].second); !e.empty()) throw RefusedChange(e);
        if (i && r.labels[i].first == r.labels[i - 1].first)
            throw RefusedChange("label \"" + r.labels[i].first + "\" given twice");
    }
    if (r.labels.size() > 64) throw RefusedChange("too many labels (at most 64)");
    std::sort(r.key_fingerprints.begin(), r.key_fingerprints.end());
    r.key_fingerprints.erase(std::unique(r.key_fingerprints.begin(), r.key_fingerprints.end()), r.key_fingerprints.end());
    for (const auto& k : r.key_fingerprints)
        if (k.size() > 200 || !k.starts_with("SHA256:")) throw RefusedChange("invalid key fingerprint \"" + k + "\"");
    std::sort(r.path_prefixes.begin(), r.path_prefixes.end());
    r.path_prefixes.erase(std::unique(r.path_prefixes.begin(), r.path_prefixes.end()), r.path_prefixes.end());
    for (const auto& p : r.path_prefixes)
        if (auto e = check_path(p); !e.empty()) throw RefusedChange(e);
    if (!r.metrics_path.empty())
        if (auto e = check_path(r.metrics_path); !e.empty()) throw RefusedChange("metrics path: " + e);
}

}  // namespace

std::string resolve_dir(const std::string& flag_value) {
    if (!flag_value.empty()) return flag_value;
    if (const char* env = std::getenv(kDirEnvVar); env && *env) return env;
    return kDefaultDir;
}

bool instance_alive(const InstanceRecord& r) {
    return r.pid > 0 && start_ticks_of(r.pid) == r.start_ticks;
}

InstanceRecord current_instance() {
    return InstanceRecord{static_cast<std::int32_t>(::getpid()), start_ticks_of(::getpid()), unix_now_ms()};
}

std::uint64_t new_instance_id() {
    std::uint64_t id = 0;
    while (id == 0)
        if (::getrandom(&id, sizeof id, 0) != sizeof id) id = static_cast<std::uint64_t>(unix_now_ms()) ^ ::getpid();
    return id;
}

// ---- DeclaredTxn ----------------------------------------------------------------------------------------------

std::optional<TargetRecord> DeclaredTxn::get(std::string_view name) {
    auto v = txn_.get(targets_, name);
    if (!v) return std::nullopt;
    return decode_target(*v);
}

void DeclaredTxn::put(std::string_view name, const TargetRecord& record) {
    TargetRecord r = record;
    normalise(name, r);
    if (r.fixed_port != 0) {
        if (auto holder = target_with_fixed_port(r.fixed_port); holder && *holder != name)
            throw RefusedChange("port " + std::to_string(r.fixed_port) + " is already the port of target \"" +
                                *holder + "\"");
    }
    if (auto old = get(name)) {
        for (const auto& fp : old->key_fingerprints) txn_.del(key_targets_, fp, &name);
        if (old->fixed_port != 0) txn_.del(fixed_ports_, port_key(old->fixed_port));
    }
    txn_.put(targets_, name, encode(r));
    for (const auto& fp : r.key_fingerprints) txn_.put(key_targets_, fp, name);
    if (r.fixed_port != 0) txn_.put(fixed_ports_, port_key(r.fixed_port), name);
}

bool DeclaredTxn::remove(std::string_view name) {
    auto old = get(name);
    if (!old) return false;
    for (const auto& fp : old->key_fingerprints) txn_.del(key_targets_, fp, &name);
    if (old->fixed_port != 0) txn_.del(fixed_ports_, port_key(old->fixed_port));
    txn_.del(targets_, name);
    return true;
}

std::optional<std::string> DeclaredTxn::target_with_fixed_port(std::uint16_t port) {
    auto v = txn_.get(fixed_ports_, port_key(port));
    return v ? std::optional<std::string>(*v) : std::nullopt;
}

std::vector<std::string> DeclaredTxn::names() { return cursor_keys(txn_, targets_); }

std::vector<std::string> DeclaredTxn::targets_for_key(std::string_view fingerprint) {
    std::vector<std::string> out;
    lmdb::Cursor c(txn_, key_targets_);
    MDB_val k = lmdb::to_val(fingerprint), v{};
    for (bool ok = c.get(k, v, MDB_SET_KEY); ok; ok = c.get(k, v, MDB_NEXT_DUP)) out.emplace_back(lmdb::to_view(v));
    return out;
}

std::optional<InviteRecord> DeclaredTxn::get_invite(std::string_view name) {
    auto v = txn_.get(invites_, name);
    if (!v) return std::nullopt;
    return decode_invite(*v);
}

void DeclaredTxn::put_invite(std::string_view name, const InviteRecord& record) {
    if (auto e = check_target_name(name); !e.empty()) throw RefusedChange(e);
    txn_.put(invites_, name, encode(record));
}

// ---- LiveTxn --------------------------------------------------------------------------------------------------

std::optional<TunnelRecord> LiveTxn::get_tunnel(std::string_view name) {
    auto v = txn_.get(tunnels_, name);
    if (!v) return std::nullopt;
    return decode_tunnel(*v);
}

void LiveTxn::put_tunnel(std::string_view name, const TunnelRecord& record) {
    if (auto e = check_target_name(name); !e.empty()) throw RefusedChange(e);
    txn_.put(tunnels_, name, encode(record));
}

bool LiveTxn::remove_tunnel(std::string_view name, std::uint64_t instance) {
    auto v = txn_.get(tunnels_, name);
    if (!v || decode_tunnel(*v).instance != instance) return false;
    return txn_.del(tunnels_, name);
}

void LiveTxn::put_instance(std::uint64_t id, const InstanceRecord& record) {
    txn_.put(instances_, encode_u64(id), encode(record));
}

void LiveTxn::remove_instance(std::uint64_t id) { txn_.del(instances_, encode_u64(id)); }

void LiveTxn::add_counter(std::string_view key, std::uint64_t delta) {
    auto v = txn_.get(counters_, key);
    std::uint64_t current = v ? decode_u64(*v) : 0;
    txn_.put(counters_, key, encode_u64(current + delta));
}

void LiveTxn::set_counter(std::string_view key, std::uint64_t value) { txn_.put(counters_, key, encode_u64(value)); }

// ---- Registry -------------------------------------------------------------------------------------------------

Registry Registry::open(const OpenOptions& o) {
    Registry reg;
    reg.dir_ = o.dir;
    const std::string live_dir = o.dir + "/" + kLiveSubdir;
    const bool writable = !o.read_only;
    const bool manage = writable && o.create;  // create what is missing, apply the permission policy
    gid_t group = static_cast<gid_t>(-1);
    if (manage) {
        group = resolve_group(o.group, o.dir);
        ensure_dir(o.dir);
        apply_policy(o.dir, group);  // before LMDB creates files, so they inherit the group (setgid)
        if (o.live) {
            ensure_dir(live_dir);
            apply_policy(live_dir, group);
        }
    } else {
        require_existing(o.dir);
    }

    reg.declared_ = open_env(o.dir, o, 0);
    {
        lmdb::Txn txn(reg.declared_, o.read_only ? MDB_RDONLY : 0);
        unsigned create = writable ? MDB_CREATE : 0;
        auto meta = txn.open_db(kDbMeta, create);
        auto targets = txn.open_db(kDbTargets, create);
        auto keys = txn.open_db(kDbKeyTargets, create | MDB_DUPSORT);
        reg.invites_ = txn.open_db(kDbInvites, create);
        if (!meta || !targets || !keys)
            throw RegistryError("registry " + o.dir + " is empty or not a monitoring-proxy registry; create it with "
                                "tunnelctl or tunneld");
        reg.opened_version_ = detail::check_schema(txn, *meta, *targets, writable, o.dir, o.migrate && writable);
        auto fixed_ports = txn.open_db(kDbFixedPorts, create);
        if (!fixed_ports) throw RegistryError("registry " + o.dir + " has no fixed_ports index (schema version 2)");
        if (reg.opened_version_ != kSchemaVersion) {
            build_fixed_port_index(txn, *targets, *fixed_ports, o.dir);
            detail::write_schema_version(txn, *meta);
        }
        reg.meta_ = *meta, reg.targets_ = *targets, reg.key_targets_ = *keys, reg.fixed_ports_ = *fixed_ports;
        txn.commit();
    }
    if (manage) apply_policy(o.dir, group);

    // Without live state (never created, and this open may not create it) every target reads as disconnected.
    if (o.live && (manage || exists(live_dir + "/" + lmdb::kDataFile))) {
        try {
            reg.live_ = open_env(live_dir, o, writable ? MDB_NOSYNC : 0);
        } catch (const lmdb::LmdbError& e) {
            // Live state describes connections of this boot only; a damaged copy is rebuilt, never trusted.
            if (!writable || !corrupt_code(e.code())) throw;
            ::unlink((live_dir + "/" + lmdb::kDataFile).c_str());
            ::unlink((live_dir + "/" + lmdb::kLockFile).c_str());
            reg.notices_.push_back(std::string("live state was unreadable (") + e.what() + "); recreated it empty");
            reg.live_ = open_env(live_dir, o, MDB_NOSYNC);
        }
        if (o.recreate_other_live && writable && !live_schema_current(reg.live_, live_dir)) {
            // Connections of another build: meaningless to this one, and tunneld's own are about to exist.
            reg.live_ = lmdb::Env();
            ::unlink((live_dir + "/" + lmdb::kDataFile).c_str());
            ::unlink((live_dir + "/" + lmdb::kLockFile).c_str());
            reg.notices_.push_back("live state had another schema version; recreated it empty");
            reg.live_ = open_env(live_dir, o, MDB_NOSYNC);
        }
        lmdb::Txn txn(reg.live_, o.read_only ? MDB_RDONLY : 0);
        unsigned create = writable ? MDB_CREATE : 0;
        auto meta = txn.open_db(kDbMeta, create);
        auto tunnels = txn.open_db(kDbTunnels, create);
        auto instances = txn.open_db(kDbInstances, create);
        auto counters = txn.open_db(kDbCounters, create);
        if (!meta || !tunnels || !instances || !counters)
            throw RegistryError("live registry " + live_dir + " is not initialised; start tunneld or run `tunnelctl init`");
        detail::check_schema(txn, *meta, *tunnels, writable, live_dir);
        reg.cluster_tunnels_ = txn.open_db(kDbClusterTunnels, create);
        reg.cluster_nodes_ = txn.open_db(kDbClusterNodes, create);
        // A new live environment belongs to this boot (sweep_dead_instances compares boot ids).
        if (writable && !txn.get(*meta, kMetaBootId)) txn.put(*meta, kMetaBootId, boot_id());
        reg.live_meta_ = *meta, reg.tunnels_ = *tunnels, reg.instances_ = *instances, reg.counters_ = *counters;
        txn.commit();
        if (manage) apply_policy(live_dir, group);
    }
    return reg;
}

void Registry::update_declared(const std::function<void(DeclaredTxn&)>& fn) {
    lmdb::Txn txn(declared_, 0);
    DeclaredTxn d(txn, targets_, key_targets_, fixed_ports_, invites_.value_or(0));
    fn(d);
    txn.commit();
}

void Registry::update_live(const std::function<void(LiveTxn&)>& fn) {
    if (!live_) throw RegistryError("registry " + dir_ + " was opened without its live state");
    lmdb::Txn txn(live_, 0);
    LiveTxn l(txn, tunnels_, instances_, counters_);
    fn(l);
    txn.commit();
}

std::optional<TargetRecord> Registry::get_target(std::string_view name) {
    lmdb::Txn txn(declared_, MDB_RDONLY);
    auto v = txn.get(targets_, name);
    if (!v) return std::nullopt;
    return decode_target(*v);
}

std::vector<std::string> Registry::targets_for_key(std::string_view fingerprint) {
    lmdb::Txn txn(declared_, MDB_RDONLY);
    return DeclaredTxn(txn, targets_, key_targets_, fixed_ports_, invites_.value_or(0)).targets_for_key(fingerprint);
}

std::optional<TunnelRecord> Registry::get_tunnel(std::string_view name) {
    if (!live_) return std::nullopt;
    lmdb::Txn txn(live_, MDB_RDONLY);
    auto v = txn.get(tunnels_, name);
    if (!v) return std::nullopt;
    return decode_tunnel(*v);
}

std::vector<SnapshotEntry> Registry::snapshot() {
    std::map<std::string, SnapshotEntry> by_name;
    {
        lmdb::Txn txn(declared_, MDB_RDONLY);
        detail::collect_targets(txn, targets_, by_name);
    }
    if (live_) {
        lmdb::Txn txn(live_, MDB_RDONLY);
        detail::collect_tunnels(txn, tunnels_, by_name);
    }
    return detail::to_sorted_vector(std::move(by_name));
}

std::map<std::uint16_t, std::string> Registry::fixed_ports() {
    std::map<std::uint16_t, std::string> out;
    lmdb::Txn txn(declared_, MDB_RDONLY);
    lmdb::Cursor c(txn, fixed_ports_);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT))
        out.emplace(port_of_key(lmdb::to_view(k)), std::string(lmdb::to_view(v)));
    return out;
}

std::map<std::string, std::uint64_t> Registry::counters() {
    if (!live_) return {};
    lmdb::Txn txn(live_, MDB_RDONLY);
    return detail::collect_counters(txn, counters_);
}

std::map<std::uint64_t, InstanceRecord> Registry::instances() {
    std::map<std::uint64_t, InstanceRecord> out;
    if (!live_) return out;
    lmdb::Txn txn(live_, MDB_RDONLY);
    lmdb::Cursor c(txn, instances_);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT))
        out.emplace(decode_u64(lmdb::to_view(k)), decode_instance(lmdb::to_view(v)));
    return out;
}

std::map<std::string, InviteRecord> Registry::invites() {
    if (!invites_) return {};
    lmdb::Txn txn(declared_, MDB_RDONLY);
    return detail::collect_records(txn, *invites_, decode_invite, "invitation");
}

std::vector<std::string> Registry::sweep_dead_instances() {
    std::vector<std::string> swept;
    if (!live_) return swept;
    const std::string current_boot = boot_id();
    lmdb::Txn txn(live_, 0);
    auto stored_boot = txn.get(live_meta_, kMetaBootId);
    // Every process recorded before a reboot is gone, even if a pid and start time happen to match again.
    const bool rebooted = stored_boot && *stored_boot != current_boot;

    std::vector<std::uint64_t> dead, alive;
    {
        lmdb::Cursor c(txn, instances_);
        MDB_val k{}, v{};
        for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT)) {
            std::uint64_t id = decode_u64(lmdb::to_view(k));
            bool live = !rebooted && instance_alive(decode_instance(lmdb::to_view(v)));
            (live ? alive : dead).push_back(id);
        }
    }
    {
        // A tunnel is stale when its owner is dead or was never registered.
        lmdb::Cursor c(txn, tunnels_);
        MDB_val k{}, v{};
        for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT)) {
            std::uint64_t owner = decode_tunnel(lmdb::to_view(v)).instance;
            if (std::find(alive.begin(), alive.end(), owner) == alive.end()) {
                swept.emplace_back(lmdb::to_view(k));
                c.del();
            }
        }
    }
    for (auto id : dead) txn.del(instances_, encode_u64(id));
    if (rebooted) txn.put(live_meta_, kMetaBootId, current_boot);
    txn.commit();
    return swept;
}

namespace detail {

void write_schema_version(lmdb::Txn& txn, MDB_dbi meta) {
    std::string v(4, '\0');
    for (int i = 0; i < 4; ++i) v[i] = static_cast<char>((kSchemaVersion >> (8 * i)) & 0xff);
    txn.put(meta, kMetaSchemaVersion, v);
}

std::uint32_t check_schema(lmdb::Txn& txn, MDB_dbi meta, MDB_dbi any_data, bool writable, const std::string& path,
                           bool accept_previous) {
    auto stored = txn.get(meta, kMetaSchemaVersion);
    if (!stored) {
        MDB_stat st{};
        lmdb::check(mdb_stat(txn.get(), any_data, &st), path, "mdb_stat");
        if (st.ms_entries != 0)
            throw RegistryError("registry " + path + " has data but no schema version: not written by monitoring-proxy");
        if (writable) write_schema_version(txn, meta);
        return kSchemaVersion;
    }
    if (stored->size() != 4) throw RegistryError("registry " + path + " has a malformed schema version record");
    std::uint32_t version = 0;
    for (int i = 0; i < 4; ++i) version |= static_cast<std::uint32_t>(static_cast<unsigned char>((*stored)[i])) << (8 * i);
    if (version == kSchemaVersion || (accept_previous && version + 1 == kSchemaVersion)) return version;
    std::string what = "registry " + path + " has schema version " + std::to_string(version) +
                       ", but this build of monitoring-proxy uses schema version " + std::to_string(kSchemaVersion);
    if (version + 1 == kSchemaVersion)
        what += "; upgrade it once, keeping every target, key and label, with `tunnelctl --registry " + path +
                " migrate`";
    else
        what += "; use a matching build or a new registry directory";
    throw SchemaMismatch(what, version);
}

void collect_targets(lmdb::Txn& txn, MDB_dbi targets, std::map<std::string, SnapshotEntry>& by_name,
                     std::vector<UnreadableRecord>* unreadable) {
    lmdb::Cursor c(txn, targets);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT)) {
        const std::string_view name = lmdb::to_view(k);
        if (auto target = decode_or_list(decode_target, lmdb::to_view(v), "target", name, unreadable))
            by_name[std::string(name)].target = std::move(*target);
    }
}

void collect_tunnels(lmdb::Txn& txn, MDB_dbi tunnels, std::map<std::string, SnapshotEntry>& by_name,
                     std::vector<UnreadableRecord>* unreadable) {
    lmdb::Cursor c(txn, tunnels);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT)) {
        const std::string_view name = lmdb::to_view(k);
        if (auto tunnel = decode_or_list(decode_tunnel, lmdb::to_view(v), "tunnel", name, unreadable))
            by_name[std::string(name)].tunnel = std::move(*tunnel);
    }
}

std::vector<SnapshotEntry> to_sorted_vector(std::map<std::string, SnapshotEntry>&& by_name) {
    std::vector<SnapshotEntry> out;
    out.reserve(by_name.size());
    for (auto& [name, e] : by_name) {
        e.name = name;
        out.push_back(std::move(e));
    }
    return out;
}

std::map<std::string, std::uint64_t> collect_counters(lmdb::Txn& txn, MDB_dbi counters) {
    std::map<std::string, std::uint64_t> out;
    lmdb::Cursor c(txn, counters);
    MDB_val k{}, v{};
    for (bool ok = c.get(k, v, MDB_FIRST); ok; ok = c.get(k, v, MDB_NEXT))
        out.emplace(std::string(lmdb::to_view(k)), decode_u64(lmdb::to_view(v)));
    return out;
}

}  // namespace detail

}  // namespace monitoring_proxy::registry
