#include "cli.hpp"
#include "etcd_commands.hpp"
#include "invite_commands.hpp"
#include "output.hpp"
#include "targets_file.hpp"

#include "monitoring_proxy/lmdb.hpp"
#include "monitoring_proxy/names.hpp"
#include "monitoring_proxy/registry.hpp"
#include "monitoring_proxy/ssh_keys.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#ifndef MP_VERSION
#define MP_VERSION "dev"
#endif

namespace monitoring_proxy::tunnelctl {
namespace {
using registry::DeclaredTxn;
using registry::RefusedChange;
using registry::Registry;
using registry::SnapshotEntry;
using registry::TargetRecord;

std::int64_t now_unix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw RefusedChange("cannot read " + path + ": " + std::strerror(errno));
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// "--flag value" or "--flag=value": returns true and the value if `arg` is `flag`.
bool option(Args& args, const std::string& arg, const std::string& flag, std::string& value) {
    if (arg == flag) {
        value = args.value_of(flag, {});
        return true;
    }
    if (arg.size() > flag.size() && arg.compare(0, flag.size() + 1, flag + "=") == 0) {
        value = args.value_of(flag, arg.substr(flag.size() + 1));
        return true;
    }
    return false;
}

std::uint16_t parse_port(const std::string& text) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc{} || end != text.data() + text.size() || port == 0 || port > 65535)
        throw UsageError("invalid port \"" + text + "\" (expected 1-65535)");
    return static_cast<std::uint16_t>(port);
}

std::pair<std::string, std::string> parse_label(const std::string& text) {
    auto eq = text.find('=');
    if (eq == std::string::npos) throw UsageError("invalid label \"" + text + "\" (expected NAME=VALUE)");
    std::string k = text.substr(0, eq), v = text.substr(eq + 1);
    if (auto e = check_label_name(k); !e.empty()) throw RefusedChange(e);
    if (auto e = check_label_value(v); !e.empty()) throw RefusedChange(e);
    return {k, v};
}

std::string fingerprint_of(const std::string& key_text, const std::string& source) {
    try {
        return parse_public_key(key_text).fingerprint;
    } catch (const KeyError& e) {
        throw RefusedChange(source + ": " + e.what());
    }
}

// Fingerprints of every key in an OpenSSH public key file (one per line, '#' comments).
std::vector<std::string> fingerprints_in_file(const std::string& path) {
    std::vector<std::string> out;
    std::istringstream lines(read_file(path));
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n) {
        auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos || line[first] == '#') continue;
        out.push_back(fingerprint_of(line, path + ":" + std::to_string(n)));
    }
    if (out.empty()) throw RefusedChange(path + ": no public key in the file");
    return out;
}

void require_name(const std::string& name) {
    if (auto e = check_target_name(name); !e.empty()) throw RefusedChange(e);
}

// A target's fixed port must be unique: two targets on one port would serve each other's exporters.
void refuse_port_clash(DeclaredTxn& txn, const std::string& name, std::uint16_t port) {
    if (!port) return;
    for (const auto& other : txn.names())
        if (other != name)
            if (auto t = txn.get(other); t && t->fixed_port == port)
                throw RefusedChange("port " + std::to_string(port) + " is already the port of target \"" + other + "\"");
}

TargetRecord existing(DeclaredTxn& txn, const std::string& name) {
    auto t = txn.get(name);
    if (!t) throw RefusedChange("unknown target \"" + name + "\" (see `tunnelctl ls`)");
    return *t;
}

SnapshotEntry entry_of(Registry& reg, const std::string& name) {
    for (auto& e : reg.snapshot())
        if (e.name == name) return e;
    throw RefusedChange("unknown target \"" + name + "\" (see `tunnelctl ls`)");
}

int cmd_add(Registry& reg, Args& args) {
    const std::string name = args.positional("NAME");
    require_name(name);
    TargetRecord t;
    t.created_unix = now_unix();
    t.origin = registry::Origin::kTunnelctl;
    while (!args.empty()) {
        std::string arg = args.next(), v;
        if (option(args, arg, "--port", v)) t.fixed_port = parse_port(v);
        else if (option(args, arg, "--key", v)) t.key_fingerprints.push_back(fingerprint_of(v, "--key"));
        else if (option(args, arg, "--key-file", v)) for (auto& fp : fingerprints_in_file(v)) t.key_fingerprints.push_back(fp);
        else if (option(args, arg, "--label", v)) t.labels.push_back(parse_label(v));
        else if (option(args, arg, "--path", v)) t.path_prefixes.push_back(v);
        else if (option(args, arg, "--metrics-path", v)) t.metrics_path = v;
        else throw UsageError("add: unknown argument \"" + arg + "\"");
    }
    reg.update_declared([&](DeclaredTxn& txn) {
        if (txn.get(name)) throw RefusedChange("target \"" + name + "\" already exists (change it with label/key, or rm it first)");
        refuse_port_clash(txn, name, t.fixed_port);
        txn.put(name, t);
    });
    std::cout << "added target " << name << (t.fixed_port ? " on port " + std::to_string(t.fixed_port) : "") << "\n";
    return kExitOk;
}

int cmd_rm(Registry& reg, Args& args) {
    const std::string name = args.positional("NAME");
    if (!args.empty()) throw UsageError("rm: unexpected argument \"" + args.peek() + "\"");
    reg.update_declared([&](DeclaredTxn& txn) {
        if (!txn.remove(name)) throw RefusedChange("unknown target \"" + name + "\" (see `tunnelctl ls`)");
    });
    std::cout << "removed target " << name << "\n";
    return kExitOk;
}

bool json_flag(Args& args, const char* command) {
    bool json = false;
    while (!args.empty()) {
        std::string arg = args.next();
        if (arg == "--json") json = true;
        else throw UsageError(std::string(command) + ": unexpected argument \"" + arg + "\"");
    }
    return json;
}

int cmd_show(Registry& reg, Args& args) {
    const std::string name = args.positional("NAME");
    bool json = json_flag(args, "show");
    auto e = entry_of(reg, name);
    std::cout << (json ? render_json(e) + "\n" : render_details(e));
    return kExitOk;
}

int cmd_ls(Registry& reg, Args& args) {
    bool json = json_flag(args, "ls");
    auto entries = reg.snapshot();
    std::cout << (json ? render_json(entries) : render_table(entries));
    return kExitOk;
}

int cmd_counters(Registry& reg, Args& args) {
    bool json = json_flag(args, "counters");
    std::cout << render_counters(reg.counters(), json);
    return kExitOk;
}

int cmd_migrate(Registry& reg, Args& args) {
    if (!args.empty()) throw UsageError("migrate: unexpected argument \"" + args.peek() + "\"");
    if (reg.opened_version() == registry::kSchemaVersion)
        std::cout << "registry " << reg.dir() << " already has schema version " << registry::kSchemaVersion << "\n";
    else
        std::cout << "registry " << reg.dir() << " upgraded from schema version " << reg.opened_version() << " to "
                  << registry::kSchemaVersion << "; every target, key and label kept\n";
    return kExitOk;
}

int cmd_init(Registry& reg, Args& args) {
    if (!args.empty()) throw UsageError("init: unexpected argument \"" + args.peek() + "\"");
    std::cout << "registry " << reg.dir() << " ready\n";
    return kExitOk;
}

int cmd_label(Registry& reg, Args& args) {
    const std::string name = args.positional("NAME");
    std::vector<std::pair<std::string, std::string>> set;
    std::vector<std::string> remove;
    while (!args.empty()) {
        std::string arg = args.next(), v;
        if (option(args, arg, "--rm", v)) remove.push_back(v);
        else if (arg.starts_with("-")) throw UsageError("label: unknown option \"" + arg + "\"");
        else set.push_back(parse_label(arg));
    }
    if (set.empty() && remove.empty()) throw UsageError("label: give K=V to set or --rm K to remove");
    reg.update_declared([&](DeclaredTxn& txn) {
        TargetRecord t = existing(txn, name);
        for (const auto& k : remove) {
            auto it = std::find_if(t.labels.begin(), t.labels.end(), [&](auto& l) { return l.first == k; });
            if (it == t.labels.end()) throw RefusedChange("target \"" + name + "\" has no label \"" + k + "\"");
            t.labels.erase(it);
        }
        for (const auto& [k, v] : set) {
            auto it = std::find_if(t.labels.begin(), t.labels.end(), [&](auto& l) { return l.first == k; });
            if (it != t.labels.end()) it->second = v;
            else t.labels.emplace_back(k, v);
        }
        txn.put(name, t);
    });
    std::cout << "updated labels of " << name << "\n";
    return kExitOk;
}

int cmd_key(Registry& reg, Args& args) {
    const std::string action = args.positional("add|rm");
    const std::string name = args.positional("NAME");
    if (action == "add") {
        const std::string key = args.positional("PUBKEY");
        std::string rest;
        while (!args.empty()) rest += " " + args.next();  // an unquoted "type base64 comment" arrives split
        const std::string fp = fingerprint_of(key + rest, "PUBKEY");
        reg.update_declared([&](DeclaredTxn& txn) {
            TargetRecord t = existing(txn, name);
            if (std::find(t.key_fingerprints.begin(), t.key_fingerprints.end(), fp) != t.key_fingerprints.end())
                throw RefusedChange("key " + fp + " is already bound to \"" + name + "\"");
            t.key_fingerprints.push_back(fp);
            txn.put(name, t);
        });
        std::cout << "bound key " << fp << " to " << name << "\n";
    } else if (action == "rm") {
        const std::string fp = args.positional("FINGERPRINT");
        if (!args.empty()) throw UsageError("key rm: unexpected argument \"" + args.peek() + "\"");
        reg.update_declared([&](DeclaredTxn& txn) {
            TargetRecord t = existing(txn, name);
            auto it = std::find(t.key_fingerprints.begin(), t.key_fingerprints.end(), fp);
            if (it == t.key_fingerprints.end())
                throw RefusedChange("key " + fp + " is not bound to \"" + name + "\" (see `tunnelctl show " + name + "`)");
            t.key_fingerprints.erase(it);
            txn.put(name, t);
        });
        std::cout << "unbound key " << fp << " from " << name << "\n";
    } else {
        throw UsageError("key: expected \"add\" or \"rm\", got \"" + action + "\"");
    }
    return kExitOk;
}

int cmd_import(Registry& reg, Args& args) {
    const std::string path = args.positional("FILE");
    if (!args.empty()) throw UsageError("import-targets: unexpected argument \"" + args.peek() + "\"");
    auto file = parse_targets_file(read_file(path), path);
    if (!file.errors.empty()) {
        std::string all;
        for (const auto& e : file.errors) all += (all.empty() ? "" : "\n") + e;
        throw RefusedChange(all + "\nnothing imported");
    }
    int added = 0, changed = 0, removed = 0;
    reg.update_declared([&](DeclaredTxn& txn) {
        for (const auto& entry : file.entries) {
            auto current = txn.get(entry.name);
            if (current && current->fixed_port == entry.port) continue;
            try {
                refuse_port_clash(txn, entry.name, entry.port);
            } catch (const RefusedChange& e) {
                // A clash with a target this file used to declare under another name resolves itself below.
                throw RefusedChange(path + ":" + std::to_string(entry.line) + ": " + e.what() + "\nnothing imported");
            }
            TargetRecord t = current.value_or(TargetRecord{});
            if (!current) {
                t.created_unix = now_unix();
                t.origin = registry::Origin::kImport;
            }
            t.fixed_port = entry.port;
            txn.put(entry.name, t);
            ++(current ? changed : added);
        }
        for (const auto& name : txn.names()) {
            auto t = txn.get(name);
            bool listed = std::any_of(file.entries.begin(), file.entries.end(), [&](auto& e) { return e.name == name; });
            if (t && t->origin == registry::Origin::kImport && !listed) {
                txn.remove(name);
                ++removed;
            }
        }
    });
    std::cout << path << ": " << file.entries.size() << " targets; " << added << " added, " << changed << " changed, "
              << removed << " removed\n";
    return kExitOk;
}

std::size_t parse_map_size(const std::string& text) {
    std::size_t mib = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mib);
    if (ec != std::errc{} || end != text.data() + text.size() || mib == 0 || mib > (std::size_t{1} << 20))
        throw UsageError("invalid --map-size \"" + text + "\" (mebibytes, 1 to 1048576)");
    return mib << 20;
}

struct Command {
    const char* name;
    int (*handler)(Registry&, Args&);
    bool read_only;
    bool migrates = false;  // opens a registry of the previous schema version to upgrade it; creates none
};

const Command kCommands[] = {
    {"init", cmd_init, false},   {"add", cmd_add, false},     {"rm", cmd_rm, false},
    {"show", cmd_show, true},    {"ls", cmd_ls, true},        {"label", cmd_label, false},
    {"key", cmd_key, false},     {"import-targets", cmd_import, false}, {"counters", cmd_counters, true},
    {"migrate", cmd_migrate, false, true},
    {"invite", cmd_invite, false}, {"invites", cmd_invites, true},
};

// Neither --registry nor $MONITORING_PROXY_REGISTRY: the user may not know which registry this is.
bool uses_default_registry(const GlobalOptions& global) {
    const char* env = std::getenv(registry::kDirEnvVar);
    return global.registry.empty() && !(env && *env);
}

// A read-only command on a missing registry says how to create one.
Registry open_for(const Command& command, const registry::OpenOptions& options) {
    try {
        return Registry::open(options);
    } catch (const registry::MissingRegistry& e) {
        throw registry::MissingRegistry(std::string(e.what()) + ": `" + command.name + "` does not create one; " +
                                        "create it with `tunnelctl --registry " + options.dir + " init` (or by " +
                                        "starting tunneld on it), or name another with --registry DIR or $" +
                                        registry::kDirEnvVar);
    }
}

}  // namespace

std::string Args::positional(const char* what) {
    if (empty()) throw UsageError(std::string("missing ") + what);
    if (peek().starts_with("--")) throw UsageError(std::string("missing ") + what + " before \"" + peek() + "\"");
    return next();
}

std::string Args::value_of(const std::string& flag, const std::string& inline_value) {
    if (!inline_value.empty()) return inline_value;
    if (empty()) throw UsageError(flag + " needs a value");
    return next();
}

namespace {

// What comes before COMMAND.
struct Globals {
    GlobalOptions global;
    EtcdOptions etcd;
    std::string command;
};

// The options up to COMMAND, and COMMAND; false when --help or --version was asked for (and answered).
bool parse_globals(Args& args, Globals& g) {
    while (!args.empty()) {
        std::string arg = args.next(), v;
        if (arg == "-h" || arg == "--help" || arg == "help") {
            std::cout << kUsage;
            return false;
        }
        if (arg == "--version") {
            std::cout << "tunnelctl " << MP_VERSION << " (registry schema " << registry::kSchemaVersion << ")\n";
            return false;
        }
        if (option(args, arg, "--registry", v)) g.global.registry = v;
        else if (option(args, arg, "--registry-group", v)) g.global.group = v;
        else if (option(args, arg, "--map-size", v)) g.global.map_size = parse_map_size(v);
        else if (option(args, arg, "--etcd", v)) g.etcd.endpoints = v;
        else if (option(args, arg, "--etcd-prefix", v)) g.etcd.prefix = v;
        else if (option(args, arg, "--etcd-cacert", v)) g.etcd.cacert = v;
        else if (option(args, arg, "--etcd-cert", v)) g.etcd.cert = v;
        else if (option(args, arg, "--etcd-key", v)) g.etcd.key = v;
        else if (arg.starts_with("-")) throw UsageError("unknown option \"" + arg + "\"");
        else {
            g.command = arg;
            break;
        }
    }
    if (g.command.empty()) throw UsageError("missing COMMAND");
    return true;
}

const Command& find_command(const std::string& name) {
    const Command* chosen = nullptr;
    for (const auto& c : kCommands)
        if (name == c.name) chosen = &c;
    if (!chosen) throw UsageError("unknown command \"" + name + "\"");
    return *chosen;
}

// Single-node mode: the command runs on the local registry.
int run_on_registry(const Command& chosen, const GlobalOptions& global, Args& args) {
    registry::OpenOptions options;
    options.dir = registry::resolve_dir(global.registry);
    options.group = global.group;
    options.map_size = global.map_size;
    options.read_only = chosen.read_only;  // so it never creates a registry nor touches its permissions
    options.create = !chosen.read_only && !chosen.migrates;
    options.migrate = options.recreate_other_live = chosen.migrates;
    if (uses_default_registry(global))
        std::cerr << "tunnelctl: using registry " << options.dir << " (the default; choose one with --registry "
                  << "DIR or $" << registry::kDirEnvVar << ")\n";
    Registry reg = open_for(chosen, options);
    for (const auto& notice : reg.notices()) std::cerr << "tunnelctl: " << options.dir << ": " << notice << "\n";
    return chosen.handler(reg, args);
}

}  // namespace

int run(int argc, char** argv) {
    Args args(std::vector<std::string>(argv + 1, argv + argc));
    Globals g;
    const GlobalOptions& global = g.global;
    if (const char* env = std::getenv("MONITORING_PROXY_ETCD")) g.etcd.endpoints = env;
    try {
        if (!parse_globals(args, g)) return kExitOk;
        const Command& chosen = find_command(g.command);
        // Cluster mode: etcd is the source of truth; no local registry is opened.
        if (!g.etcd.endpoints.empty()) return run_on_etcd(g.etcd, g.command, chosen.handler, chosen.read_only, args);
        return run_on_registry(chosen, global, args);
    } catch (const UsageError& e) {
        std::cerr << "tunnelctl: " << e.what() << "\nTry 'tunnelctl --help'.\n";
        return kExitUsage;
    } catch (const RefusedChange& e) {
        std::cerr << "tunnelctl: " << e.what() << "\n";
        return kExitRefused;
    } catch (const lmdb::LmdbError& e) {
        if (e.code() == MDB_MAP_FULL)
            std::cerr << "tunnelctl: the registry is full: " << e.what()
                      << "\nnothing was changed; grow it with --map-size MIB (currently "
                      << (global.map_size ? global.map_size >> 20 : registry::kDefaultMapSize >> 20) << " or more)\n";
        else
            std::cerr << "tunnelctl: " << e.what() << "\n";
        return kExitRegistry;
    } catch (const std::exception& e) {
        std::cerr << "tunnelctl: " << e.what() << "\n";
        return kExitRegistry;
    }
}

}  // namespace monitoring_proxy::tunnelctl
