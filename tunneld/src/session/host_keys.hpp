// Host keys: every ssh_host_*_key in --host-key-dir, or a freshly generated ed25519 key when there is none.
#pragma once

#include <libssh/server.h>

#include <string>
#include <vector>

namespace tunneld {

struct HostKeyInfo {
    std::string path;
    std::string type;
    std::string fingerprint;
};

// Loads the keys into `bind` (SSH_BIND_OPTIONS_IMPORT_KEY), logging each key's fingerprint. Throws
// std::runtime_error when no key can be loaded or generated.
std::vector<HostKeyInfo> load_host_keys(ssh_bind bind, const std::string& dir);

}  // namespace tunneld
