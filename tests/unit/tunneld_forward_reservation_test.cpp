#include "forward/forward_reservation.hpp"
#include "forward/tunnel_table.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "temp_registry.hpp"

using namespace tunneld;
using monitoring_proxy::registry::OpenOptions;
using monitoring_proxy::registry::Registry;

namespace {

constexpr std::uint32_t kStart = LoopbackAddresses::kFirst;
const std::map<std::uint16_t, std::string> kNoFixedPorts;

bool is_open(int fd) { return fd >= 0 && ::fcntl(fd, F_GETFD) != -1; }

// Stands in for bind(): hands out real descriptors (so closing them is observable) unless told to fail a port.
struct FakeBinder {
    std::set<std::uint16_t> busy;        // EADDRINUSE, on any address
    bool fail_shared = false;            // the 127.0.0.1 listener of a fixed port
    std::vector<int> handed_out;
    int operator()(std::uint32_t, std::uint16_t port, bool share) {
        if (busy.count(port) || (share && fail_shared)) {
            errno = EADDRINUSE;
            return -1;
        }
        int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        handed_out.push_back(fd);
        return fd;
    }
};

Registry open_registry(const TempDir& d, bool read_only = false) {
    OpenOptions o;
    o.dir = d.sub("reg");
    if (read_only) {
        { Registry::open(o); }  // create it first
        o.read_only = true;
        o.create = false;
    }
    return Registry::open(o);
}

}  // namespace

TEST_CASE("the table never hands another target's port, reservation or fixed port out", "[tunneld][table]") {
    TunnelTable table({20000, 20002}, kStart);
    std::string why;
    const std::map<std::uint16_t, std::string> fixed{{20002, "fixed"}};
    auto a = table.reserve("a", 1, 0, fixed, {}, why);
    REQUIRE(a);
    CHECK(a->port == 20000);
    auto b = table.reserve("b", 2, 0, fixed, {}, why);  // a's reservation holds 20000; 20002 is fixed's
    REQUIRE(b);
    CHECK(b->port == 20001);
    CHECK(b->address != a->address);
    CHECK_FALSE(table.reserve("c", 3, 0, fixed, {}, why));
    CHECK(why == "no free port in --port-range");
    CHECK_FALSE(table.reserve("c", 3, 20000, fixed, {}, why));  // a fixed port another target holds
    CHECK(why == "port 20000 is used by another tunnel");
    auto f = table.reserve("fixed", 4, 20002, fixed, {}, why);
    REQUIRE(f);
    table.release(*b);
    auto c = table.reserve("c", 5, 0, fixed, {}, why);  // b's port is free again
    REQUIRE(c);
    CHECK(c->port == 20001);
}

TEST_CASE("a takeover reuses the port with a new address, and only the newest forward removes it", "[tunneld][table]") {
    TunnelTable table({20000, 20009}, kStart);
    std::string why;
    auto first = *table.reserve("web1", 1, 0, kNoFixedPorts, {}, why);
    CHECK_FALSE(table.install(first, TunnelOwner{nullptr, 10, 1, first.address, first.port, "c1"}));
    auto second = *table.reserve("web1", 2, 0, kNoFixedPorts, {}, why);
    CHECK(second.port == first.port);        // the same target keeps its port
    CHECK(second.address != first.address);  // never its address
    auto previous = table.install(second, TunnelOwner{nullptr, 20, 2, second.address, second.port, "c2"});
    REQUIRE(previous);
    CHECK(previous->forward_id == 1);
    CHECK_FALSE(table.remove_if_owner("web1", 1));  // the old forward ends after the takeover: keeps the new one
    CHECK(table.owner("web1")->forward_id == 2);
    CHECK(table.remove_if_owner("web1", 2));
    CHECK_FALSE(table.owner("web1"));
}

TEST_CASE("a port another program holds is skipped for the next one", "[tunneld][reservation]") {
    TunnelTable table({20000, 20009}, kStart);
    FakeBinder binder;
    binder.busy = {20000, 20001};
    ForwardReservation r(table, {"web1", 1, 0, "c", "SHA256:k", false});
    REQUIRE(r.bind(kNoFixedPorts, std::ref(binder)));
    CHECK(r.claim().port == 20002);
}

TEST_CASE("each failing step gives back everything taken so far", "[tunneld][reservation]") {
    TunnelTable table({20000, 20000}, kStart);  // one port: a leaked reservation would block the next request
    TempDir d;
    std::string why;
    auto port_is_free = [&] {
        auto probe = table.reserve("probe", 99, 0, kNoFixedPorts, {}, why);
        if (probe) table.release(*probe);
        return probe.has_value();
    };

    SECTION("bind of a fixed port's 127.0.0.1 listener fails") {
        FakeBinder binder;
        binder.fail_shared = true;
        {
            ForwardReservation r(table, {"db", 1, 20000, "c", "SHA256:k", false});
            CHECK_FALSE(r.bind(kNoFixedPorts, std::ref(binder)));
            CHECK(r.refusal() == std::string("bind_failed"));
            CHECK_THAT(r.failure(), Catch::Contains("127.0.0.1:20000"));
        }
        REQUIRE(binder.handed_out.size() == 1);
        CHECK_FALSE(is_open(binder.handed_out[0]));  // the forward's own listener, closed again
        CHECK(port_is_free());
    }
    SECTION("the event loop refuses the listener") {
        FakeBinder binder;
        {
            ForwardReservation r(table, {"web1", 1, 0, "c", "SHA256:k", false});
            REQUIRE(r.bind(kNoFixedPorts, std::ref(binder)));
            CHECK_FALSE(r.watch([](int, std::string& failure) {
                failure = "cannot watch the listener: no space";
                return false;
            }));
        }
        CHECK_FALSE(is_open(binder.handed_out.at(0)));
        CHECK(port_is_free());
    }
    SECTION("the registry refuses the record") {
        FakeBinder binder;
        RegistryGateway registry(open_registry(d, true));  // read-only: every write fails
        {
            ForwardReservation r(table, {"web1", 1, 0, "c", "SHA256:k", false});
            REQUIRE(r.bind(kNoFixedPorts, std::ref(binder)));
            REQUIRE(r.watch([](int, std::string&) { return true; }));
            CHECK_FALSE(r.record(registry, 7, 1000, TunnelOwner{}));
            CHECK(r.refusal() == std::string("registry_error"));
        }
        CHECK_FALSE(is_open(binder.handed_out.at(0)));
        CHECK(port_is_free());
        CHECK_FALSE(table.owner("web1"));
    }
    SECTION("every step succeeds: the forward keeps its listeners and the registry names its address") {
        FakeBinder binder;
        RegistryGateway registry(open_registry(d));
        int listen_fd = -1, fixed_fd = -1;
        std::uint32_t address = 0;
        {
            ForwardReservation r(table, {"web1", 1, 0, "c", "SHA256:k", false});
            REQUIRE(r.bind(kNoFixedPorts, std::ref(binder)));
            REQUIRE(r.watch([](int, std::string&) { return true; }));
            REQUIRE(r.record(registry, 7, 1000, TunnelOwner{nullptr, 3, 1, r.claim().address, r.claim().port, "c"}));
            address = r.claim().address;
            r.take_listeners(listen_fd, fixed_fd);
        }
        CHECK(is_open(listen_fd));
        CHECK(fixed_fd == -1);
        CHECK_FALSE(port_is_free());
        CHECK(table.owner("web1")->forward_id == 1);
        auto tunnel = registry.with([](Registry& reg) { return reg.get_tunnel("web1"); });
        REQUIRE(tunnel);
        CHECK(tunnel->address == address);
        CHECK(tunnel->instance == 7);
        ::close(listen_fd);
    }
}
