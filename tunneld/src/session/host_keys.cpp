#include "session/host_keys.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "session/key_identity.hpp"
#include "log.hpp"

namespace tunneld {
namespace fs = std::filesystem;

namespace {

bool is_host_key_name(const std::string& name) {
    return name.rfind("ssh_host_", 0) == 0 && name.size() > 13 && name.substr(name.size() - 4) == "_key";
}

void generate_ed25519(const std::string& path) {
    ssh_key key = nullptr;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK)
        throw std::runtime_error("cannot generate an ed25519 host key");
    mode_t old = umask(077);  // the private key file must never exist with a wider mode
    int rc = ssh_pki_export_privkey_file(key, nullptr, nullptr, nullptr, path.c_str());
    umask(old);
    if (rc != SSH_OK) {
        ssh_key_free(key);
        throw std::runtime_error("cannot write host key " + path);
    }
    ::chmod(path.c_str(), 0600);
    // The .pub next to it lets operators pin the key with ssh-keygen as usual (best effort).
    ssh_pki_export_pubkey_file(key, (path + ".pub").c_str());
    ssh_key_free(key);
    log_line("host key generated path=" + path + " type=ssh-ed25519 mode=0600");
}

}  // namespace

std::vector<HostKeyInfo> load_host_keys(ssh_bind bind, const std::string& dir) {
    std::vector<std::string> paths;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        fs::create_directories(dir, ec);
        if (ec) throw std::runtime_error("--host-key-dir " + dir + ": " + ec.message());
    }
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        auto name = entry.path().filename().string();
        if (entry.is_regular_file() && is_host_key_name(name)) paths.push_back(entry.path().string());
    }
    if (ec) throw std::runtime_error("--host-key-dir " + dir + ": " + ec.message());
    if (paths.empty()) {
        std::string path = (fs::path(dir) / "ssh_host_ed25519_key").string();
        generate_ed25519(path);
        paths.push_back(path);
    }
    std::sort(paths.begin(), paths.end());

    std::vector<HostKeyInfo> loaded;
    for (const auto& path : paths) {
        ssh_key key = nullptr;
        if (ssh_pki_import_privkey_file(path.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
            log_line("host key skipped path=" + path + " reason=\"cannot be read as a private key\"");
            continue;
        }
        auto type = ssh_key_type(key);
        if (type == SSH_KEYTYPE_DSS) {
            ssh_key_free(key);
            log_line("host key skipped path=" + path + " reason=\"DSA keys are not supported\"");
            continue;
        }
        HostKeyInfo info{path, key_type_name(key), sha256_fingerprint(key)};
        // IMPORT_KEY hands ownership of the key to the bind (freed by ssh_bind_free).
        if (ssh_bind_options_set(bind, SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK) {
            ssh_key_free(key);
            log_line("host key skipped path=" + path + " reason=" + log_quote(ssh_get_error(bind)));
            continue;
        }
        log_line("host key path=" + path + " type=" + info.type + " fingerprint=" + info.fingerprint);
        loaded.push_back(std::move(info));
    }
    if (loaded.empty()) throw std::runtime_error("no usable host key in " + dir);
    return loaded;
}

}  // namespace tunneld
