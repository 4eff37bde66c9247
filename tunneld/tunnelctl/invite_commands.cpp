#include "invite_commands.hpp"

#include "output.hpp"

#include "monitoring_proxy/invite_token.hpp"
#include "monitoring_proxy/json.hpp"
#include "monitoring_proxy/names.hpp"
#include "monitoring_proxy/ssh_keys.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <unistd.h>

namespace monitoring_proxy::tunnelctl {
namespace {
using registry::DeclaredTxn;
using registry::InviteRecord;
using registry::RefusedChange;
using registry::Registry;
using registry::TargetRecord;

constexpr std::int64_t kMaxTtlSeconds = 365 * 86400;

std::int64_t now_unix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

struct InviteOptions {
    std::int64_t ttl_seconds = 86400;
    unsigned uses = 1;
    std::vector<std::pair<std::string, std::string>> labels;
    std::vector<std::string> paths;
    bool json = false;
    std::string host_key_dir = "/etc/ssh";
    std::string proxy_host;  // empty: this machine's host name
    std::uint16_t proxy_port = 22;
    std::string user = "monitoring";
    std::string host_dir = "/etc/monitoring-proxy";
    std::string exporter = "localhost:9100";
};

// "30m", "24h", "7d", "3600s" (or plain seconds).
std::int64_t parse_ttl(const std::string& text) {
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    std::string_view unit(end, text.data() + text.size() - end);
    std::int64_t scale = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
    if (ec != std::errc{} || n <= 0 || scale == 0 || n > kMaxTtlSeconds / scale)
        throw UsageError("invalid --ttl \"" + text + "\" (expected N with s, m, h or d, at most 365d)");
    return n * scale;
}

unsigned parse_uses(const std::string& text) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end != text.data() + text.size() || n == 0 || n > 1000)
        throw UsageError("invalid --uses \"" + text + "\" (expected 1-1000)");
    return n;
}

// HOST, HOST:PORT or [V6]:PORT.
void parse_proxy(const std::string& text, InviteOptions& o) {
    auto bad = [&] { return UsageError("invalid --proxy \"" + text + "\" (expected HOST or HOST:PORT)"); };
    std::string host = text, port;
    if (text.starts_with("[")) {
        auto close = text.find(']');
        if (close == std::string::npos) throw bad();
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') throw bad();
            port = text.substr(close + 2);
        }
    } else if (auto colon = text.find(':'); colon != std::string::npos && text.find(':', colon + 1) == std::string::npos) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    if (host.empty() || host.find_first_of(" \t\n'\"\\$`;&|<>*?") != std::string::npos) throw bad();
    if (!port.empty() || text.ends_with(":")) {
        unsigned n = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
        if (ec != std::errc{} || end != port.data() + port.size() || n == 0 || n > 65535) throw bad();
        o.proxy_port = static_cast<std::uint16_t>(n);
    }
    o.proxy_host = host;
}

// The value of `--flag VALUE` or `--flag=VALUE` when `arg` is that flag.
bool flag_value(Args& args, const std::string& arg, const char* flag, std::string& value) {
    const std::string f = flag;
    if (arg == f) return value = args.value_of(f, {}), true;
    if (arg.starts_with(f + "=")) return value = args.value_of(f, arg.substr(f.size() + 1)), true;
    return false;
}

InviteOptions parse_invite_options(Args& args) {
    InviteOptions o;
    while (!args.empty()) {
        std::string arg = args.next(), v;
        if (arg == "--json") o.json = true;
        else if (flag_value(args, arg, "--ttl", v)) o.ttl_seconds = parse_ttl(v);
        else if (flag_value(args, arg, "--uses", v)) o.uses = parse_uses(v);
        else if (flag_value(args, arg, "--label", v)) {
            auto eq = v.find('=');
            if (eq == std::string::npos) throw UsageError("invalid label \"" + v + "\" (expected NAME=VALUE)");
            o.labels.emplace_back(v.substr(0, eq), v.substr(eq + 1));  // validated when stored
        } else if (flag_value(args, arg, "--path", v)) o.paths.push_back(v);
        else if (flag_value(args, arg, "--host-key-dir", v)) o.host_key_dir = v;
        else if (flag_value(args, arg, "--proxy", v)) parse_proxy(v, o);
        else if (flag_value(args, arg, "--user", v)) o.user = v;
        else if (flag_value(args, arg, "--host-dir", v)) o.host_dir = v;
        else if (flag_value(args, arg, "--exporter", v)) o.exporter = v;
        else throw UsageError("invite: unknown argument \"" + arg + "\"");
    }
    for (const auto* value : {&o.user, &o.host_dir, &o.exporter})
        if (value->empty() || value->find_first_of(" \t\n'\"\\$`;&|<>*?") != std::string::npos)
            throw UsageError("invite: \"" + *value + "\" must not be empty or contain spaces or shell characters");
    if (!o.host_dir.starts_with("/")) throw UsageError("invite: --host-dir must be an absolute path");
    if (o.proxy_host.empty()) {
        char name[256] = {};
        if (::gethostname(name, sizeof name - 1) != 0 || !*name) throw UsageError("invite: give --proxy HOST[:PORT]");
        o.proxy_host = name;
    }
    return o;
}

struct HostKeys {
    std::vector<std::string> known_hosts;   // "[HOST]:PORT TYPE BASE64" (or "HOST ..." on port 22)
    std::vector<std::string> fingerprints;  // "SHA256:...", for clients that pin a fingerprint (plink -hostkey)
};

// Every ssh_host_*_key.pub in the directory (tunneld's --host-key-dir).
HostKeys host_keys(const InviteOptions& o) {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(o.host_key_dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.starts_with("ssh_host_") && name.ends_with("_key.pub")) files.push_back(entry.path().string());
    }
    if (ec) throw RefusedChange("--host-key-dir " + o.host_key_dir + ": " + ec.message());
    std::sort(files.begin(), files.end());
    const std::string host = o.proxy_port == 22 ? o.proxy_host : "[" + o.proxy_host + "]:" + std::to_string(o.proxy_port);
    HostKeys keys;
    for (const auto& path : files) {
        std::ifstream in(path);
        std::string text;
        std::getline(in, text);
        try {
            PublicKey key = parse_public_key(text);
            keys.known_hosts.push_back(host + " " + key.type + " " + key.base64);
            keys.fingerprints.push_back(key.fingerprint);
        } catch (const KeyError& e) {
            throw RefusedChange(path + ": " + e.what());
        }
    }
    if (keys.known_hosts.empty())
        throw RefusedChange("no ssh_host_*_key.pub in " + o.host_key_dir + " (pass tunneld's --host-key-dir)");
    return keys;
}

// Another client's complete setup: its own key file, its own host key pin, its own tunnel command.
struct ClientLines {
    std::vector<std::string> setup;  // shell lines, in order, from an empty host
    std::string command;             // the tunnel; the same line works for every reconnect
};

// What the host runs, each line on its own (tested one by one).
struct HostSetup {
    std::vector<std::string> setup;  // shell lines, in order
    std::string ssh;                 // the tunnel, by hand
    std::string unit_path, unit;     // the tunnel, kept up by systemd and autossh
    std::vector<std::string> host_key_fingerprints;
    ClientLines dbclient, plink;     // for hosts with dropbear or PuTTY instead of OpenSSH
};

std::string printf_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) out += (out.empty() ? "" : "\\n") + line;
    return "printf '" + out + "\\n'";
}

// dbclient (dropbear 2022.83) reads only its own key format, has no SSH_ASKPASS, and looks host keys up in
// $HOME/.ssh/known_hosts by host name alone (no [HOST]:PORT form). DROPBEAR_PASSWORD answers the token prompt:
// the token is then in the process's environment, readable by root and its own user only (never in
// /proc/PID/cmdline), and set from the 0600 file at each start.
ClientLines dbclient_lines(const std::string& name, const std::string& token_file, const HostKeys& keys,
                           const InviteOptions& o) {
    const std::string key = o.host_dir + "/id_dropbear";
    std::vector<std::string> known;
    for (const auto& line : keys.known_hosts) known.push_back(o.proxy_host + line.substr(line.find(' ')));
    ClientLines c;
    c.setup.push_back("dropbearkey -t ed25519 -f " + key);
    c.setup.push_back("install -d -m 700 " + o.host_dir + "/.ssh && " + printf_lines(known) + " > " + o.host_dir +
                      "/.ssh/known_hosts");
    c.command = "HOME=" + o.host_dir + " DROPBEAR_PASSWORD=\"$(cat " + token_file + ")\" dbclient -N -K 15 " +
                "-o ExitOnForwardFailure=yes -i " + key + " -p " + std::to_string(o.proxy_port) + " -R " + name +
                ":80:" + o.exporter + " " + o.user + "@" + o.proxy_host;
    return c;
}

// plink (PuTTY 0.78) reads a .ppk key, pins the host key by fingerprint (-hostkey, once per key) and answers the
// token prompt from the 0600 file (-pwfile); once the key is bound the file is never read again.
ClientLines plink_lines(const std::string& name, const std::string& token_file, const HostKeys& keys,
                        const InviteOptions& o) {
    const std::string key = o.host_dir + "/id_ed25519.ppk";
    ClientLines c;
    c.setup.push_back("puttygen -q -t ed25519 -C " + name + " --new-passphrase /dev/null -o " + key);
    c.command = "plink -ssh -batch -N";
    for (const auto& fp : keys.fingerprints) c.command += " -hostkey " + fp;
    c.command += " -i " + key + " -pwfile " + token_file + " -P " + std::to_string(o.proxy_port) + " -R " + name +
                 ":80:" + o.exporter + " " + o.user + "@" + o.proxy_host;
    return c;
}

HostSetup host_setup(const std::string& name, const std::string& token, const InviteOptions& o) {
    const std::string dir = o.host_dir;
    const std::string key = dir + "/id_ed25519", known = dir + "/known_hosts", token_file = dir + "/join-token",
                      askpass = dir + "/askpass";
    HostSetup h;
    h.setup.push_back("install -d -m 700 " + dir);
    h.setup.push_back("(umask 077 && printf '%s\\n' '" + token + "' > " + token_file + ")");
    h.setup.push_back("ssh-keygen -q -t ed25519 -N '' -C " + name + " -f " + key);
    const HostKeys keys = host_keys(o);
    h.host_key_fingerprints = keys.fingerprints;
    h.setup.push_back(printf_lines(keys.known_hosts) + " > " + known);
    h.setup.push_back("printf '#!/bin/sh\\nexec cat " + token_file + "\\n' > " + askpass + " && chmod 700 " + askpass);
    // The token travels over keyboard-interactive, read by SSH_ASKPASS from its 0600 file: never on a command
    // line, in a login name or in an environment variable.
    const std::string ssh_args =
        "-N -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=3 "
        "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + known + " -o IdentitiesOnly=yes -i " + key +
        " -o KbdInteractiveAuthentication=yes -o PreferredAuthentications=publickey,keyboard-interactive -p " +
        std::to_string(o.proxy_port) + " -R " + name + ":80:" + o.exporter + " " + o.user + "@" + o.proxy_host;
    h.ssh = "SSH_ASKPASS=" + askpass + " SSH_ASKPASS_REQUIRE=force ssh " + ssh_args;
    h.unit_path = "/etc/systemd/system/monitoring-proxy-tunnel.service";
    h.unit = "[Unit]\n"
             "Description=Reverse SSH tunnel serving " + name + " to monitoring-proxy at " + o.proxy_host + "\n"
             "Wants=network-online.target\n"
             "After=network-online.target\n"
             "\n"
             "[Service]\n"
             "Environment=AUTOSSH_GATETIME=0 SSH_ASKPASS=" + askpass + " SSH_ASKPASS_REQUIRE=force\n"
             "ExecStart=/usr/bin/autossh -M 0 " + ssh_args + "\n"
             "Restart=always\n"
             "RestartSec=5\n"
             "\n"
             "[Install]\n"
             "WantedBy=multi-user.target\n";
    // The first two lines (directory, token file) are every client's.
    h.dbclient = dbclient_lines(name, token_file, keys, o);
    h.plink = plink_lines(name, token_file, keys, o);
    for (auto* c : {&h.dbclient, &h.plink}) c->setup.insert(c->setup.begin(), h.setup.begin(), h.setup.begin() + 2);
    return h;
}

std::string json_strings(const std::vector<std::string>& items) {
    std::string out = "[";
    for (const auto& s : items) out += (out.size() > 1 ? "," : "") + json::quote(s);
    return out + "]";
}

std::string json_client(const ClientLines& c) {
    return "{\"setup\":" + json_strings(c.setup) + ",\"command\":" + json::quote(c.command) + "}";
}

void print_invite_json(const std::string& name, const std::string& token, bool declared, const InviteOptions& o,
                       const InviteRecord& invite, const HostSetup& host) {
    std::cout << "{\"name\":" << json::quote(name) << ",\"token\":" << json::quote(token)
              << ",\"declared\":" << (declared ? "true" : "false") << ",\"uses\":" << o.uses
              << ",\"expires_unix\":" << invite.expires_unix << ",\"expires\":" << json::quote(rfc3339(invite.expires_unix))
              << ",\"host_key_fingerprints\":" << json_strings(host.host_key_fingerprints)
              << ",\"setup\":" << json_strings(host.setup) << ",\"ssh\":" << json::quote(host.ssh)
              << ",\"unit_path\":" << json::quote(host.unit_path) << ",\"unit\":" << json::quote(host.unit)
              << ",\"dbclient\":" << json_client(host.dbclient) << ",\"plink\":" << json_client(host.plink) << "}\n";
}

void print_invite_text(const std::string& name, bool declared, const InviteOptions& o, const InviteRecord& invite,
                       const HostSetup& host) {
    std::cout << (declared ? "declared target " : "invited existing target ") << name << "; the token works "
              << o.uses << (o.uses == 1 ? " time" : " times") << " until " << rfc3339(invite.expires_unix)
              << " and is shown only now.\n\n# On the host, as root:\n";
    for (const auto& line : host.setup) std::cout << line << "\n";
    std::cout << "cat > " << host.unit_path << " <<'EOF'\n" << host.unit << "EOF\n"
              << "systemctl daemon-reload && systemctl enable --now monitoring-proxy-tunnel\n"
              << "\n# Or run the tunnel by hand (the same command keeps working once the key is bound):\n"
              << host.ssh << "\n";
    for (const auto& [client, lines] : {std::pair{"dropbear's dbclient", &host.dbclient}, {"PuTTY's plink", &host.plink}}) {
        std::cout << "\n# With " << client << " instead of OpenSSH (keep it running with your service manager):\n";
        for (const auto& line : lines->setup) std::cout << line << "\n";
        std::cout << lines->command << "\n";
    }
    std::cout << "\n# The proxy's host key fingerprints (to compare by eye):\n";
    for (const auto& fp : host.host_key_fingerprints) std::cout << "# " << fp << "\n";
}

int cmd_invite_rm(Registry& reg, Args& args) {
    const std::string name = args.positional("NAME");
    if (!args.empty()) throw UsageError("invite rm: unexpected argument \"" + args.peek() + "\"");
    reg.update_declared([&](DeclaredTxn& txn) {
        auto invite = txn.get_invite(name);
        if (!invite || invite->revoked) throw RefusedChange("no invitation for \"" + name + "\" (see `tunnelctl invites`)");
        invite->revoked = true;  // kept, so that tunneld logs a later use as revoked
        txn.put_invite(name, *invite);
    });
    std::cout << "revoked the invitation for " << name << "\n";
    return kExitOk;
}

}  // namespace

int cmd_invite(Registry& reg, Args& args) {
    std::string name = args.positional("NAME");
    if (name == "rm" && !args.empty() && !args.peek().starts_with("-")) return cmd_invite_rm(reg, args);
    if (auto e = check_target_name(name); !e.empty()) throw RefusedChange(e);
    const InviteOptions o = parse_invite_options(args);
    const registry::InviteToken token = registry::new_invite_token(name);
    const HostSetup host = host_setup(name, token.text(), o);  // before any change: a bad --host-key-dir changes nothing
    const std::int64_t now = now_unix();
    InviteRecord invite;
    invite.secret_sha256 = registry::invite_secret_hash(token.secret);
    invite.created_unix = now;
    invite.expires_unix = now + o.ttl_seconds;
    invite.uses_left = static_cast<std::uint16_t>(o.uses);
    bool declared = false;
    reg.update_declared([&](DeclaredTxn& txn) {
        auto existing = txn.get(name);
        TargetRecord t = existing.value_or(TargetRecord{});
        if (!existing) {
            t.created_unix = now;
            t.origin = registry::Origin::kTunnelctl;
            declared = true;
        }
        for (const auto& [k, v] : o.labels) {
            auto it = std::find_if(t.labels.begin(), t.labels.end(), [&](auto& l) { return l.first == k; });
            if (it != t.labels.end()) it->second = v;
            else t.labels.emplace_back(k, v);
        }
        for (const auto& p : o.paths) t.path_prefixes.push_back(p);
        txn.put(name, t);
        txn.put_invite(name, invite);  // replaces an earlier invitation: its token stops working
    });
    if (o.json) print_invite_json(name, token.text(), declared, o, invite, host);
    else print_invite_text(name, declared, o, invite, host);
    return kExitOk;
}

int cmd_invites(Registry& reg, Args& args) {
    bool json = false;
    while (!args.empty()) {
        std::string arg = args.next();
        if (arg == "--json") json = true;
        else throw UsageError("invites: unexpected argument \"" + arg + "\"");
    }
    const std::int64_t now = now_unix();
    std::ostringstream out;
    if (json) out << "[";
    else out << "NAME STATE USES_LEFT EXPIRES USED_BY\n";
    bool first = true;
    for (const auto& [name, r] : reg.invites()) {
        if (json) {
            out << (first ? "" : ",") << "{\"name\":" << json::quote(name) << ",\"state\":\"" << registry::invite_state(r, now)
                << "\",\"uses_left\":" << r.uses_left << ",\"created\":" << json::quote(rfc3339(r.created_unix))
                << ",\"expires\":" << json::quote(rfc3339(r.expires_unix)) << ",\"expires_unix\":" << r.expires_unix
                << ",\"uses\":[";
            for (std::size_t i = 0; i < r.uses.size(); ++i)
                out << (i ? "," : "") << "{\"when\":" << json::quote(rfc3339(r.uses[i].when_unix))
                    << ",\"fingerprint\":" << json::quote(r.uses[i].key_fingerprint) << "}";
            out << "]}";
        } else {
            std::string used;
            for (const auto& u : r.uses) used += (used.empty() ? "" : ",") + u.key_fingerprint + "@" + rfc3339(u.when_unix);
            out << name << " " << registry::invite_state(r, now) << " " << r.uses_left << " " << rfc3339(r.expires_unix) << " "
                << (used.empty() ? "-" : used) << "\n";
        }
        first = false;
    }
    if (json) out << "]\n";
    std::cout << out.str();
    return kExitOk;
}

}  // namespace monitoring_proxy::tunnelctl
