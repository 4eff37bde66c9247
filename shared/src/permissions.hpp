// The registry's permission policy (README "Registry permissions"): the writer owns the files; the nginx
// workers' group may read data.mdb and write lock.mdb (LMDB reader slots), nobody else has access.
#pragma once

#include <string>
#include <sys/types.h>

namespace monitoring_proxy::registry {

inline constexpr mode_t kDirMode = 02750;  // setgid: files created inside inherit the readers' group
inline constexpr mode_t kDataMode = 0640;
inline constexpr mode_t kLockMode = 0660;

// The group a writer gives the registry at `dir`: `name`, else $MONITORING_PROXY_REGISTRY_GROUP (told so), else
// the group of the existing DIR/data.mdb (the readers already have it), else "www-data" (Debian's nginx user)
// when it exists; -1 when none applies. Throws RegistryError for an unknown group name.
gid_t resolve_group(const std::string& name, const std::string& dir);

// Creates `dir` (and parents) if missing; returns true if it created it.
bool ensure_dir(const std::string& dir);

// Gives a lock.mdb this process just created (LMDB creates a missing one even for a read-only open, with the
// umask) the policy's mode and data.mdb's group, so the nginx workers keep their reader slots.
void adopt_new_lock_file(const std::string& dir);

// Applies the policy to an environment directory and its data.mdb / lock.mdb. Throws RegistryError naming the
// path when a change that should be possible fails.
void apply_policy(const std::string& dir, gid_t group);

}  // namespace monitoring_proxy::registry
