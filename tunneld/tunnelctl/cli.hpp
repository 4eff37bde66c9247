// tunnelctl's command line: parsing and the exit-status contract (0 ok, 1 usage, 2 refused change, 3 registry
// unusable).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace monitoring_proxy::tunnelctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitRefused = 2;
inline constexpr int kExitRegistry = 3;

class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Arguments after the global options, consumed front to back.
class Args {
public:
    explicit Args(std::vector<std::string> args) : args_(std::move(args)) {}
    bool empty() const { return pos_ >= args_.size(); }
    const std::string& peek() const { return args_.at(pos_); }
    // The next positional argument, named `what` in the error when missing.
    std::string positional(const char* what);
    // The value of option `flag` (already consumed), from "--flag=value" or the next argument.
    std::string value_of(const std::string& flag, const std::string& inline_value);
    std::string next() { return args_.at(pos_++); }

private:
    std::vector<std::string> args_;
    std::size_t pos_ = 0;
};

struct GlobalOptions {
    std::string registry;      // --registry DIR
    std::string group;         // --registry-group NAME
    std::size_t map_size = 0;  // --map-size MiB (bytes here)
};

int run(int argc, char** argv);
extern const char* const kUsage;

}  // namespace monitoring_proxy::tunnelctl
