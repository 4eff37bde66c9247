// The etcd client against a real etcd 3.4 started by the test (etcd_process.hpp).
#include <catch2/catch.hpp>

#include <thread>

#include "etcd_process.hpp"
#include "monitoring_proxy/etcd_client.hpp"

using namespace monitoring_proxy::etcd;

namespace {
Client client_for(const std::string& urls) { return Client({parse_endpoints(urls), {}, std::chrono::milliseconds(1000)}); }
}  // namespace

TEST_CASE("endpoints parse and name the bad one") {
    auto e = parse_endpoints("http://127.0.0.1:2379,https://etcd1.example:2379/");
    REQUIRE(e.size() == 2);
    CHECK(e[0].authority == "127.0.0.1:2379");
    CHECK_FALSE(e[0].tls);
    CHECK(e[1].authority == "etcd1.example:2379");
    CHECK(e[1].tls);
    CHECK_THROWS_WITH(parse_endpoints("127.0.0.1:2379"), Catch::Contains("\"127.0.0.1:2379\""));
    CHECK_THROWS_WITH(parse_endpoints("http://host"), Catch::Contains("http://HOST:PORT"));
    CHECK_THROWS_AS(parse_endpoints(""), ConfigError);
    CHECK(prefix_end("/a/") == "/a0");
}

TEST_CASE("range and txn compare-and-swap and delete against real etcd") {
    EtcdProcess etcd;
    Client c = client_for(etcd.url());
    c.put("/t/a", "1");
    c.put("/t/b", "2");
    c.put("/u/x", "outside");
    auto r = c.range_prefix("/t/");
    REQUIRE(r.kvs.size() == 2);
    CHECK(r.kvs[0].key == "/t/a");
    CHECK(r.kvs[1].value == "2");
    CHECK(r.revision >= r.kvs[1].mod_revision);

    // CAS on mod_revision: the first writer wins, the one holding a stale revision loses and sees the new value.
    const auto rev = r.kvs[0].mod_revision;
    auto won = c.txn({Compare::mod_revision("/t/a", rev)}, {Op::put("/t/a", "first")});
    CHECK(won.succeeded);
    auto lost = c.txn({Compare::mod_revision("/t/a", rev)}, {Op::put("/t/a", "second")}, {Op::get("/t/a")});
    CHECK_FALSE(lost.succeeded);
    REQUIRE(lost.got.size() == 1);
    CHECK(lost.got[0].value == "first");
    // Create only if absent.
    CHECK(c.txn({Compare::absent("/t/new")}, {Op::put("/t/new", "x")}).succeeded);
    CHECK_FALSE(c.txn({Compare::absent("/t/new")}, {Op::put("/t/new", "y")}).succeeded);
    CHECK(c.get("/t/new")->value == "x");
    CHECK(c.txn({Compare::create_revision("/t/new", c.get("/t/new")->create_revision)}, {Op::remove("/t/new")})
              .succeeded);
    CHECK_FALSE(c.get("/t/new"));
    c.txn({}, {Op::remove_prefix("/t/")});
    CHECK(c.range_prefix("/t/").kvs.empty());
    CHECK(c.get("/u/x")->value == "outside");
}

TEST_CASE("a lease keeps its keys while kept alive and drops them when revoked") {
    EtcdProcess etcd;
    Client c = client_for(etcd.url());
    const auto lease = c.lease_grant(5);
    c.put("/l/k", "v", lease);
    CHECK(c.get("/l/k")->lease == lease);
    CHECK(c.lease_keep_alive(lease) == 5);
    c.lease_revoke(lease);
    CHECK_FALSE(c.get("/l/k"));
    CHECK_THROWS_AS(c.lease_keep_alive(lease), LeaseExpired);
    CHECK_THROWS_AS(c.put("/l/k", "v", lease), LeaseExpired);
    c.lease_revoke(lease);  // already gone: no error
}

TEST_CASE("watch from a revision delivers puts and deletes and reports a compacted revision") {
    EtcdProcess etcd;
    Client c = client_for(etcd.url());
    c.put("/w/a", "1");
    const auto start = c.range_prefix("/w/").revision + 1;
    c.put("/w/b", "2");
    c.put("/other", "x");
    c.txn({}, {Op::remove("/w/a")});
    auto watch = c.watch_prefix("/w/", start);
    std::vector<WatchEvent> seen;
    while (seen.size() < 2) {
        auto batch = watch->next();
        REQUIRE(batch);
        for (auto& e : batch->events) seen.push_back(e);
    }
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].type == WatchEvent::Type::kPut);
    CHECK(seen[0].kv.key == "/w/b");
    CHECK(seen[1].type == WatchEvent::Type::kDelete);
    CHECK(seen[1].kv.key == "/w/a");

    // cancel() from another thread ends a blocked next().
    std::thread canceller([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let next() block first
        watch->cancel();
    });
    CHECK_FALSE(watch->next());
    canceller.join();

    // Compact, then watch from before it.
    c.put("/w/c", "3");
    const auto now = c.range_prefix("/w/").revision;
    {
        // etcdctl is the operator's tool for this; the client has no compact call of its own.
        const std::string cmd = "ETCDCTL_API=3 etcdctl --endpoints=" + etcd.url() + " compact " +
                                std::to_string(now) + " >/dev/null";
        REQUIRE(std::system(cmd.c_str()) == 0);
    }
    auto old = c.watch_prefix("/w/", start);
    CHECK_THROWS_AS(old->next(), Compacted);
}

TEST_CASE("a dead endpoint fails over to the next and none answering is Unavailable") {
    EtcdProcess etcd;
    const std::string dead = "http://127.0.0.1:" + std::to_string(free_loopback_port());
    Client c = client_for(dead + "," + etcd.url());
    c.put("/f/k", "v");
    CHECK(c.current_endpoint() == etcd.url());
    CHECK(c.get("/f/k")->value == "v");
    etcd.stop();
    CHECK_THROWS_AS(c.get("/f/k"), Unavailable);
    etcd.start();
    // gRPC reconnects within its capped backoff (1 s): poll with a deadline.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::optional<KeyValue> kv;
    while (!kv && std::chrono::steady_clock::now() < deadline) {
        try {
            kv = c.get("/f/k");
        } catch (const Unavailable&) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    REQUIRE(kv);
    CHECK(kv->value == "v");
}
