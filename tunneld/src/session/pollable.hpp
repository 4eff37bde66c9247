// Anything registered in a worker's epoll set (epoll_event.data.ptr points to one).
#pragma once

#include <chrono>

namespace tunneld {

using Clock = std::chrono::steady_clock;

struct Pollable {
    enum class Kind { kMailbox, kListener, kRelay, kSession };
    explicit Pollable(Kind k) : kind(k) {}
    Kind kind;
    bool dead = false;  // ended this round: events still queued for it are skipped, it is freed between rounds
};

}  // namespace tunneld
