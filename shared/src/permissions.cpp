#include "permissions.hpp"

#include "monitoring_proxy/registry.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

namespace monitoring_proxy::registry {
namespace {
constexpr const char* kDefaultGroup = "www-data";  // Debian's nginx user

std::string errno_text(const std::string& what, const std::string& path) {
    return what + " " + path + ": " + std::strerror(errno);
}

// `owner`: the user every file of the registry belongs to, the owner of its directory (tunneld's service user
// in a package install, root in the image).
void set_mode_and_group(const std::string& path, mode_t mode, gid_t group, uid_t registry_owner) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        throw RegistryError(errno_text("cannot stat", path));
    }
    // Only the owner (or root) can change these; a writer running as someone else keeps what it found.
    if (st.st_uid != ::geteuid() && ::geteuid() != 0) return;
    // A root writer (an operator's tunnelctl) gives every file to the registry's owner: taking them for root
    // would lock out a tunneld running as its own user, and a file left to a reader's user would let it rewrite
    // the targets.
    const uid_t owner = ::geteuid() == 0 && st.st_uid != registry_owner ? registry_owner : static_cast<uid_t>(-1);
    const gid_t new_group = group != static_cast<gid_t>(-1) && st.st_gid != group ? group : static_cast<gid_t>(-1);
    if ((owner != static_cast<uid_t>(-1) || new_group != static_cast<gid_t>(-1)) &&
        ::chown(path.c_str(), owner, new_group) != 0)
        throw RegistryError(errno_text("cannot give owner " + std::to_string(registry_owner) + " and group " +
                                           std::to_string(group) + " to",
                                       path));
    if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0)
        throw RegistryError(errno_text("cannot chmod", path));
}
}  // namespace

gid_t resolve_group(const std::string& name, const std::string& dir) {
    std::string chosen = name;
    if (chosen.empty())
        if (const char* env = std::getenv(kGroupEnvVar); env && *env) chosen = env;
    if (chosen.empty()) {
        // Regrouping an existing registry to a default would lock out the readers it was set up for.
        struct stat st {};
        if (::stat((dir + "/" + lmdb::kDataFile).c_str(), &st) == 0) return st.st_gid;
        struct group* g = ::getgrnam(kDefaultGroup);
        return g ? g->gr_gid : static_cast<gid_t>(-1);
    }
    if (struct group* g = ::getgrnam(chosen.c_str())) return g->gr_gid;
    char* end = nullptr;
    long numeric = std::strtol(chosen.c_str(), &end, 10);
    if (end && *end == '\0' && numeric >= 0) return static_cast<gid_t>(numeric);
    throw RegistryError("unknown registry group \"" + chosen + "\" (from --registry-group or $" + kGroupEnvVar +
                        "): it must be the group nginx workers run as");
}

bool ensure_dir(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) throw RegistryError("registry path " + dir + " exists and is not a directory");
        return false;
    }
    if (errno != ENOENT) throw RegistryError(errno_text("cannot access registry directory", dir));
    auto slash = dir.find_last_of('/');
    if (slash != std::string::npos && slash > 0) ensure_dir(dir.substr(0, slash));
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        throw RegistryError(errno_text("cannot create registry directory", dir));
    return true;
}

uid_t owner_of(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) throw RegistryError(errno_text("cannot stat", dir));
    return st.st_uid;
}

void adopt_new_lock_file(const std::string& dir) {
    struct stat data {};
    const gid_t group =
        ::stat((dir + "/" + lmdb::kDataFile).c_str(), &data) == 0 ? data.st_gid : static_cast<gid_t>(-1);
    set_mode_and_group(dir + "/" + lmdb::kLockFile, kLockMode, group, data.st_uid);
}

void apply_policy(const std::string& dir, gid_t group) {
    const uid_t owner = owner_of(dir);
    set_mode_and_group(dir, kDirMode, group, owner);
    set_mode_and_group(dir + "/" + lmdb::kDataFile, kDataMode, group, owner);
    set_mode_and_group(dir + "/" + lmdb::kLockFile, kLockMode, group, owner);
}

}  // namespace monitoring_proxy::registry
