#include "policy/preauth_admission.hpp"

#include <memory>
#include <random>

namespace tunneld {

const char* admission_reason(Admission a) {
    switch (a) {
        case Admission::kPerSource:
            return "per_source";
        case Admission::kRandomEarlyDrop:
            return "random_early_drop";
        case Admission::kFull:
            return "unauthenticated_cap";
        case Admission::kAdmitted:
            break;
    }
    return "admitted";
}

PreauthAdmission::PreauthAdmission(PreauthLimits limits, std::function<double()> uniform01)
    : limits_(limits), uniform01_(std::move(uniform01)) {
    if (!uniform01_) {
        auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
        uniform01_ = [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
    }
}

double PreauthAdmission::drop_probability(int unauthenticated) const {
    if (unauthenticated >= limits_.full) return 1.0;
    if (unauthenticated < limits_.drop_start) return 0.0;
    double rate = limits_.drop_rate_percent / 100.0;
    double span = limits_.full - limits_.drop_start;
    return rate + (1.0 - rate) * (unauthenticated - limits_.drop_start) / span;
}

Admission PreauthAdmission::admit(const std::string& source) {
    std::lock_guard lock(mu_);
    auto it = per_source_.find(source);
    if (it != per_source_.end() && it->second >= limits_.per_source) return Admission::kPerSource;
    if (total_ >= limits_.full) return Admission::kFull;
    if (total_ >= limits_.drop_start && uniform01_() < drop_probability(total_)) return Admission::kRandomEarlyDrop;
    ++per_source_[source];
    ++total_;
    return Admission::kAdmitted;
}

void PreauthAdmission::release(const std::string& source) {
    std::lock_guard lock(mu_);
    auto it = per_source_.find(source);
    if (it == per_source_.end()) return;  // never admitted: nothing to give back
    if (--it->second == 0) per_source_.erase(it);
    --total_;
}

int PreauthAdmission::total() const {
    std::lock_guard lock(mu_);
    return total_;
}

int PreauthAdmission::from(const std::string& source) const {
    std::lock_guard lock(mu_);
    auto it = per_source_.find(source);
    return it == per_source_.end() ? 0 : it->second;
}

}  // namespace tunneld
