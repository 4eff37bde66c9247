// One line per event on stderr: "2026-11-29T17:40:00.123Z tunneld[PID]: EVENT key=value ...". Each line is
// written with a single write(2), so lines from worker threads never interleave.
#pragma once

#include <string>
#include <string_view>

namespace tunneld {

void log_line(std::string_view text) noexcept;

// Quotes a value for a key=value log field when it holds spaces, quotes or control characters, so a hostile
// user name or target cannot forge log fields or lines.
std::string log_quote(std::string_view value);

// close(2) with its failure logged, naming the descriptor and what it was ("relay socket"): EBADF there is a
// bookkeeping bug worth seeing.
void close_fd(int fd, std::string_view what) noexcept;

}  // namespace tunneld
