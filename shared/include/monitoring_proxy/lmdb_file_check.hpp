#pragma once
// A truncated LMDB data file (a full disk, a partial copy from a backup) still opens: LMDB reads its meta pages
// with pread, then maps the size they record, and the first read of a page past the end of the shorter file
// raises SIGBUS — in an nginx worker that is a crash loop that takes every target down. This check reads the
// two meta pages the same way LMDB does and compares the newest one's last page with the file size, so every
// process (lmdb::Env, before its first transaction) refuses the file with a clear error instead of crashing.

#include <optional>
#include <string>

namespace monitoring_proxy::lmdb {

// An error text when `data_mdb` is shorter than its newest committed meta page says; nullopt when it is whole,
// missing, or not judged (not an LMDB file, too short for its meta pages: LMDB itself reports those cleanly).
std::optional<std::string> truncated_lmdb_file(const std::string& data_mdb);

}  // namespace monitoring_proxy::lmdb
