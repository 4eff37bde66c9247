// Admission of connections that have not authenticated yet, like sshd's PerSourceMaxStartups and MaxStartups
// start:rate:full. A flood from one address fills only its own per-address quota; floods from many addresses meet
// random early drop, so the pool never fills at a steady rate while others still get slots, and a hard cap.
// Thread-safe: the acceptor admits, the workers release.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace tunneld {

struct PreauthLimits {
    // One address may hold this many unauthenticated connections (sshd's PerSourceMaxStartups; a host needs one).
    int per_source = 10;
    // Random early drop: from drop_start unauthenticated connections on, refuse with drop_rate_percent %, rising
    // linearly to 100 % at full. The start is well above sshd's 10: after a restart the whole fleet logs in at
    // once, and a login with a key takes milliseconds. full is the hard cap tunneld always had.
    int drop_start = 64;
    int drop_rate_percent = 30;
    int full = 256;
};

enum class Admission { kAdmitted, kPerSource, kRandomEarlyDrop, kFull };

// The counter label and log reason of a refusal: per_source, random_early_drop, unauthenticated_cap.
const char* admission_reason(Admission a);

class PreauthAdmission {
public:
    // uniform01 draws in [0, 1) for random early drop; the default is a seeded Mersenne twister.
    explicit PreauthAdmission(PreauthLimits limits = {}, std::function<double()> uniform01 = {});

    // Counts the connection against `source` and the pool when admitted.
    Admission admit(const std::string& source);
    // Every path that ends an admitted unauthenticated connection calls this once (auth success included).
    void release(const std::string& source);

    int total() const;
    int from(const std::string& source) const;
    const PreauthLimits& limits() const { return limits_; }
    // Probability that random early drop refuses a new connection while `unauthenticated` are held.
    double drop_probability(int unauthenticated) const;

private:
    PreauthLimits limits_;
    std::function<double()> uniform01_;
    mutable std::mutex mu_;
    std::map<std::string, int> per_source_;
    int total_ = 0;
};

}  // namespace tunneld
