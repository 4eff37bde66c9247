#include "monitoring_proxy/lmdb_file_check.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace monitoring_proxy::lmdb {

namespace {

static_assert(sizeof(void*) == 8, "the meta page offsets below are those of LMDB on LP64");

// liblmdb's private layout (mdb.c), stable since the 0.9 file format: a 16-byte page header, then MDB_meta:
// mm_magic u32, mm_version u32, mm_address ptr, mm_mapsize size_t, mm_dbs[2] (48 bytes each; the first one's
// md_pad holds the page size), mm_last_pg size_t, mm_txnid size_t.
constexpr std::size_t kMagicOffset = 16;
constexpr std::size_t kPageSizeOffset = 40;
constexpr std::size_t kLastPageOffset = 136;
constexpr std::size_t kTxnIdOffset = 144;
constexpr std::size_t kMetaBytes = 152;
constexpr std::uint32_t kMagic = 0xBEEFC0DE;

struct Meta {
    bool valid = false;
    std::uint32_t page_size = 0;
    std::uint64_t last_page = 0;
    std::uint64_t txn_id = 0;
};

template <typename T>
T load(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

Meta read_meta(int fd, off_t offset) {
    unsigned char buf[kMetaBytes];
    if (::pread(fd, buf, sizeof buf, offset) != static_cast<ssize_t>(sizeof buf)) return {};
    if (load<std::uint32_t>(buf + kMagicOffset) != kMagic) return {};
    Meta m;
    m.page_size = load<std::uint32_t>(buf + kPageSizeOffset);
    m.last_page = load<std::uint64_t>(buf + kLastPageOffset);
    m.txn_id = load<std::uint64_t>(buf + kTxnIdOffset);
    m.valid = m.page_size >= 512 && (m.page_size & (m.page_size - 1)) == 0;
    return m;
}

}  // namespace

std::optional<std::string> truncated_lmdb_file(const std::string& data_mdb) {
    int fd = ::open(data_mdb.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    struct stat st {};
    std::optional<std::string> error;
    Meta first = ::fstat(fd, &st) == 0 ? read_meta(fd, 0) : Meta{};
    if (first.valid) {
        Meta second = read_meta(fd, static_cast<off_t>(first.page_size));
        const Meta& newest = (second.valid && second.txn_id > first.txn_id) ? second : first;
        const std::uint64_t needed = (newest.last_page + 1) * newest.page_size;
        if (static_cast<std::uint64_t>(st.st_size) < needed) {
            error = data_mdb + " is truncated: " + std::to_string(st.st_size) + " bytes, its last transaction (" +
                    std::to_string(newest.txn_id) + ") needs " + std::to_string(needed) +
                    "; restore it from a backup or rebuild the registry";
        }
    }
    ::close(fd);
    return error;
}

}  // namespace monitoring_proxy::lmdb
