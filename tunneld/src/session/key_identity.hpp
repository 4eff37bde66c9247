// Identity of a public key as tunneld compares and logs it, computed with libssh.
#pragma once

#include <libssh/libssh.h>

#include <string>

namespace tunneld {

// "SHA256:<unpadded base64>", exactly as `ssh-keygen -lf` prints it. Empty on failure.
std::string sha256_fingerprint(ssh_key key);
// The key blob in base64, as written in authorized_keys. Empty on failure.
std::string key_blob_base64(ssh_key key);
// "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ...
std::string key_type_name(ssh_key key);

}  // namespace tunneld
