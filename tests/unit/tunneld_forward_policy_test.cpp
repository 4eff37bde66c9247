#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "policy/forward_policy.hpp"
#include "options.hpp"
#include "forward/port_allocator.hpp"

using monitoring_proxy::registry::TargetRecord;
using namespace tunneld;

namespace {

const std::string kFpA = "SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kFpB = "SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

struct World {
    std::map<std::string, TargetRecord> targets;
    PolicyConfig config{{20000, 29999}, false};

    ForwardDecision decide(const std::string& addr, std::uint32_t port, const KeyGrant& key) const {
        TargetLookup lookup = [&](std::string_view n) -> std::optional<TargetRecord> {
            auto it = targets.find(std::string(n));
            if (it == targets.end()) return std::nullopt;
            return it->second;
        };
        FixedPortLookup by_port = [&](std::uint16_t p) -> std::optional<std::string> {
            for (auto& [n, r] : targets)
                if (r.fixed_port == p) return n;
            return std::nullopt;
        };
        return decide_forward({addr, port}, key, config, lookup, by_port);
    }
};

TargetRecord bound(std::vector<std::string> fps, std::uint16_t port = 0) {
    TargetRecord r;
    r.key_fingerprints = std::move(fps);
    r.fixed_port = port;
    return r;
}

World make_world() {
    World w;
    w.targets["web"] = bound({kFpA});
    w.targets["db"] = bound({kFpB}, 20002);
    w.targets["shared"] = bound({}, 20001);
    w.targets["far"] = bound({kFpA}, 40000);
    return w;
}

KeyGrant key_a() {
    return KeyGrant{kFpA, {"web", "far"}, false, {}, true};
}
KeyGrant key_b() {
    return KeyGrant{kFpB, {"db"}, false, {}, true};
}
KeyGrant shared_key() {
    return KeyGrant{"SHA256:ccccccccccccccccccccccccccccccccccccccccccc", {}, true, {}, true};
}

}  // namespace

TEST_CASE("named forwards: bound key serves its target", "[tunneld][forward_policy]") {
    auto w = make_world();
    auto d = w.decide("web", 80, key_a());
    CHECK(d.allowed);
    CHECK(d.target == "web");
    CHECK(d.fixed_port == 0);
}

TEST_CASE("named forward of another key's target is a takeover attempt", "[tunneld][forward_policy]") {
    auto w = make_world();
    auto d = w.decide("db", 80, key_a());
    CHECK_FALSE(d.allowed);
    CHECK(d.takeover_attempt);
    CHECK(d.reason == "other_key");
}

TEST_CASE("numbered forwards name the target by its fixed port", "[tunneld][forward_policy]") {
    auto w = make_world();
    auto d = w.decide("localhost", 20002, key_b());
    CHECK(d.allowed);
    CHECK(d.target == "db");
    CHECK(d.fixed_port == 20002);
    CHECK(w.decide("", 20002, key_b()).allowed);
    CHECK(w.decide("0.0.0.0", 20002, key_b()).allowed);  // bind address ignored: always loopback

    auto outside = w.decide("localhost", 80, key_b());
    CHECK(outside.reason == "port_range");
    auto undeclared = w.decide("localhost", 20005, key_b());
    CHECK(undeclared.reason == "undeclared");
    CHECK(w.decide("localhost", 20002, key_a()).takeover_attempt);
}

TEST_CASE("port 0 needs exactly one bound target", "[tunneld][forward_policy]") {
    auto w = make_world();
    auto d = w.decide("localhost", 0, key_b());
    CHECK(d.allowed);
    CHECK(d.target == "db");
    CHECK(w.decide("localhost", 0, key_a()).reason == "ambiguous_port0");
    CHECK(w.decide("localhost", 0, shared_key()).reason == "ambiguous_port0");
}

TEST_CASE("shared authorized_keys key serves unbound targets only", "[tunneld][forward_policy]") {
    auto w = make_world();
    CHECK(w.decide("shared", 80, shared_key()).allowed);
    CHECK(w.decide("localhost", 20001, shared_key()).allowed);
    CHECK(w.decide("web", 80, shared_key()).takeover_attempt);
    CHECK(w.decide("newhost", 80, shared_key()).reason == "undeclared");
    // A bound key may not serve unbound targets.
    CHECK(w.decide("shared", 80, key_a()).reason == "not_bound");
}

TEST_CASE("with allow-undeclared, authorized_keys keys self-register new names for authorized_keys keys", "[tunneld][forward_policy]") {
    auto w = make_world();
    w.config.allow_undeclared = true;
    auto d = w.decide("newhost", 80, shared_key());
    CHECK(d.allowed);
    CHECK(d.self_register);
    CHECK(w.decide("newhost", 80, key_a()).reason == "not_bound");
    CHECK(w.decide("Bad_Name", 80, shared_key()).reason == "invalid_name");
    // A shared key that already self-registered a name (so is bound to it) may still register more.
    auto k = shared_key();
    k.bound_targets = {"first"};
    CHECK(w.decide("second", 80, k).self_register);
    CHECK(w.decide("shared", 80, k).allowed);
}

TEST_CASE("fixed port outside the range is refused", "[tunneld][forward_policy]") {
    auto w = make_world();
    CHECK(w.decide("far", 80, key_a()).reason == "port_range");
}

TEST_CASE("authorized_keys restrictions apply", "[tunneld][forward_policy]") {
    auto w = make_world();
    auto k = shared_key();
    k.permitlisten = {"shared:80"};
    CHECK(w.decide("shared", 80, k).allowed);
    CHECK(w.decide("shared", 81, k).reason == "permitlisten");
    k.forwarding_allowed = false;
    CHECK(w.decide("shared", 80, k).reason == "no_port_forwarding");
}

TEST_CASE("address-like bind addresses", "[tunneld][forward_policy]") {
    CHECK(is_address_like(""));
    CHECK(is_address_like("localhost"));
    CHECK(is_address_like("*"));
    CHECK(is_address_like("0.0.0.0"));
    CHECK(is_address_like("::1"));
    CHECK_FALSE(is_address_like("web-1"));
    CHECK_FALSE(is_address_like("host.example"));
}

TEST_CASE("port allocation prefers the previous port, skips used ones, wraps", "[tunneld][port_allocator]") {
    PortAllocator a({20000, 20004});
    std::set<std::uint16_t> used{20000, 20001};
    std::set<std::uint16_t> unbindable{20002};
    auto in_use = [&](std::uint16_t p) { return used.count(p) > 0; };
    auto bind = [&](std::uint16_t p) { return unbindable.count(p) == 0; };
    CHECK(a.allocate(in_use, bind, std::uint16_t{20004}) == std::optional<std::uint16_t>(20004));
    used.insert(20004);
    CHECK(a.allocate(in_use, bind) == std::optional<std::uint16_t>(20003));
    used.insert(20003);
    CHECK_FALSE(a.allocate(in_use, bind).has_value());  // everything used or unbindable
    used.erase(20000);
    CHECK(a.allocate(in_use, bind, std::uint16_t{30000}) == std::optional<std::uint16_t>(20000));
}

TEST_CASE("command line", "[tunneld][options]") {
    auto o = parse_options({"--listen", "127.0.0.1:2222", "--port-range=21000-21010", "--keepalive", "2",
                            "--keepalive-max", "4", "--allow-undeclared", "--user", "tunnel"});
    CHECK(o.listen_host == "127.0.0.1");
    CHECK(o.listen_port == 2222);
    CHECK(o.port_range.lo == 21000);
    CHECK(o.port_range.hi == 21010);
    CHECK(o.keepalive_seconds == 2);
    CHECK(o.keepalive_max == 4);
    CHECK(o.allow_undeclared);
    CHECK(o.user == "tunnel");
    CHECK(parse_options({"--listen", "[::1]:22"}).listen_host == "::1");
    CHECK_THROWS_AS(parse_options({"--port-range", "30000-20000"}), UsageError);
    CHECK_THROWS_AS(parse_options({"--listen", "nope"}), UsageError);
    CHECK_THROWS_AS(parse_options({"--keepalive"}), UsageError);
    CHECK_THROWS_AS(parse_options({"--bogus"}), UsageError);
    std::string help = usage_text();
    for (const char* flag : {"--listen", "--registry", "--host-key-dir", "--authorized-keys", "--port-range",
                             "--keepalive", "--keepalive-max", "--allow-undeclared", "--user", "--help", "--version"}) {
        CHECK(help.find(flag) != std::string::npos);
    }
}
