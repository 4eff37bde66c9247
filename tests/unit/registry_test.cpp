#include "monitoring_proxy/codec.hpp"
#include "monitoring_proxy/reader.hpp"
#include "monitoring_proxy/registry.hpp"
#include "temp_registry.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace monitoring_proxy::registry;

namespace {
OpenOptions options_for(const TempDir& d, std::size_t map_size = 0) {
    OpenOptions o;
    o.dir = d.sub("reg");
    o.group = "root";
    o.map_size = map_size;
    return o;
}

TargetRecord target(std::uint16_t port = 0) {
    TargetRecord t;
    t.fixed_port = port;
    t.created_unix = 1700000000;
    return t;
}

void put_target(Registry& reg, const std::string& name, const TargetRecord& t) {
    reg.update_declared([&](DeclaredTxn& txn) { txn.put(name, t); });
}

// Writes one raw key into a database of an environment, as a tool or another version would. The registry must
// be closed: one process must not hold an LMDB environment open twice.
void poke(const std::string& env_dir, const char* db, std::string_view key, std::string_view value) {
    MDB_env* env;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    REQUIRE(mdb_env_open(env, env_dir.c_str(), 0, 0640) == 0);
    MDB_txn* txn;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_dbi dbi;
    REQUIRE(mdb_dbi_open(txn, db, 0, &dbi) == 0);
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v{value.size(), const_cast<char*>(value.data())};
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

void poke_meta(const std::string& env_dir, const char* key, std::string_view value) { poke(env_dir, kDbMeta, key, value); }
}  // namespace

TEST_CASE("declared targets round-trip and keep the key index in step", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    TargetRecord t = target(20001);
    t.labels = {{"team", "ops"}, {"env", "prod"}};
    t.key_fingerprints = {"SHA256:b", "SHA256:a", "SHA256:a"};
    put_target(reg, "web1", t);

    auto got = reg.get_target("web1");
    REQUIRE(got);
    CHECK(got->fixed_port == 20001);
    CHECK(got->labels == std::vector<std::pair<std::string, std::string>>{{"env", "prod"}, {"team", "ops"}});
    CHECK(got->key_fingerprints == std::vector<std::string>{"SHA256:a", "SHA256:b"});
    CHECK(reg.targets_for_key("SHA256:a") == std::vector<std::string>{"web1"});
    CHECK_FALSE(reg.get_target("web2"));

    t.key_fingerprints = {"SHA256:c"};
    put_target(reg, "web1", t);
    CHECK(reg.targets_for_key("SHA256:a").empty());
    CHECK(reg.targets_for_key("SHA256:c") == std::vector<std::string>{"web1"});

    reg.update_declared([](DeclaredTxn& txn) { CHECK(txn.remove("web1")); CHECK_FALSE(txn.remove("web1")); });
    CHECK(reg.targets_for_key("SHA256:c").empty());
    CHECK(reg.snapshot().empty());
}

TEST_CASE("invalid names, labels and paths are refused and change nothing", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    CHECK_THROWS_AS(put_target(reg, "Bad", target()), RefusedChange);
    TargetRecord t = target();
    t.labels = {{"__name__", "x"}};
    CHECK_THROWS_WITH(put_target(reg, "ok", t), Catch::Contains("reserved"));
    t.labels = {{"a", "1"}, {"a", "2"}};
    CHECK_THROWS_WITH(put_target(reg, "ok", t), Catch::Contains("twice"));
    t.labels = {};
    t.path_prefixes = {"/../etc"};
    CHECK_THROWS_AS(put_target(reg, "ok", t), RefusedChange);
    // A refusal in the middle of a transaction rolls back the earlier writes of that transaction.
    CHECK_THROWS(reg.update_declared([](DeclaredTxn& txn) {
        txn.put("first", target());
        txn.put("Second", target());
    }));
    CHECK(reg.snapshot().empty());
}

TEST_CASE("live tunnels are removed only by their owner", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    put_target(reg, "web1", target());
    TunnelRecord r{20007, 11, 1700000000000, "127.0.0.1:5555", "SHA256:a"};
    reg.update_live([&](LiveTxn& l) { l.put_tunnel("web1", r); });
    CHECK(reg.get_tunnel("web1") == r);
    reg.update_live([&](LiveTxn& l) { CHECK_FALSE(l.remove_tunnel("web1", 12)); });  // taken over meanwhile
    CHECK(reg.get_tunnel("web1"));
    reg.update_live([&](LiveTxn& l) { CHECK(l.remove_tunnel("web1", 11)); });
    CHECK_FALSE(reg.get_tunnel("web1"));

    reg.update_live([&](LiveTxn& l) {
        l.add_counter("sessions_total", 2);
        l.add_counter("sessions_total", 3);
        l.set_counter("x", 7);
    });
    CHECK(reg.counters() == std::map<std::string, std::uint64_t>{{"sessions_total", 5}, {"x", 7}});
}

// tunneld writes the declared environment without the lock its live writes take (registry_gateway.hpp): one
// Registry must serve both, and readers, from several threads at once.
TEST_CASE("one registry serves declared and live writes from several threads at once", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    constexpr int kPerThread = 40;
    std::atomic<int> failures{0};
    auto guarded = [&](auto fn) {
        return [&failures, fn] {
            try {
                fn();
            } catch (...) {
                ++failures;
            }
        };
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
        threads.emplace_back(guarded([&reg, w] {
            for (int i = 0; i < kPerThread; ++i)
                put_target(reg, "t" + std::to_string(w) + "-" + std::to_string(i), target());
        }));
        threads.emplace_back(guarded([&reg] {
            for (int i = 0; i < kPerThread; ++i) reg.update_live([](LiveTxn& l) { l.add_counter("c", 1); });
        }));
    }
    threads.emplace_back(guarded([&reg] {
        for (int i = 0; i < kPerThread; ++i) (void)reg.snapshot();
    }));
    for (auto& t : threads) t.join();
    CHECK(failures == 0);
    CHECK(reg.snapshot().size() == 2 * kPerThread);
    CHECK(reg.counters().at("c") == 2 * kPerThread);
}

TEST_CASE("the snapshot joins declared and live state", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    put_target(reg, "a", target());
    put_target(reg, "b", target());
    reg.update_live([&](LiveTxn& l) {
        l.put_tunnel("b", TunnelRecord{20001, 1, 0, "c", "f"});
        l.put_tunnel("orphan", TunnelRecord{20002, 1, 0, "c", "f"});
    });
    auto snap = reg.snapshot();
    REQUIRE(snap.size() == 3);
    CHECK((snap[0].name == "a" && snap[0].target && !snap[0].tunnel));
    CHECK((snap[1].name == "b" && snap[1].target && snap[1].tunnel));
    CHECK((snap[2].name == "orphan" && !snap[2].target && snap[2].tunnel));
}

TEST_CASE("tunnels of dead instances are swept, live ones kept", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    auto me = current_instance();
    reg.update_live([&](LiveTxn& l) {
        l.put_instance(1, me);
        l.put_instance(2, InstanceRecord{child, me.start_ticks + 999999, 0});  // same pid, another process
        l.put_tunnel("mine", TunnelRecord{20001, 1, 0, "c", "f"});
        l.put_tunnel("theirs", TunnelRecord{20002, 2, 0, "c", "f"});
        l.put_tunnel("nobodys", TunnelRecord{20003, 3, 0, "c", "f"});
    });
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    auto swept = reg.sweep_dead_instances();
    std::sort(swept.begin(), swept.end());
    CHECK(swept == std::vector<std::string>{"nobodys", "theirs"});
    CHECK(reg.get_tunnel("mine"));
    CHECK(reg.instances().size() == 1);
    CHECK(instance_alive(me));
}

TEST_CASE("an incompatible schema version is refused with both versions named", "[registry]") {
    TempDir d;
    { auto reg = Registry::open(options_for(d)); }
    poke_meta(d.sub("reg"), kMetaSchemaVersion, std::string("\x07\0\0\0", 4));
    CHECK_THROWS_WITH(Registry::open(options_for(d)),
                      Catch::Contains("schema version 7") &&
                          Catch::Contains("uses schema version " + std::to_string(kSchemaVersion)));
    CHECK_THROWS_WITH(Reader(d.sub("reg")), Catch::Contains("schema version 7"));
}

namespace {
// What a registry of schema version 1 looked like: the same databases, no fixed_ports index.
void downgrade_to_version_1(const std::string& env_dir) {
    MDB_env* env;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    REQUIRE(mdb_env_open(env, env_dir.c_str(), 0, 0640) == 0);
    MDB_txn* txn;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_dbi index;
    REQUIRE(mdb_dbi_open(txn, kDbFixedPorts, 0, &index) == 0);
    REQUIRE(mdb_drop(txn, index, 1) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    poke_meta(env_dir, kMetaSchemaVersion, std::string("\x01\0\0\0", 4));
}

OpenOptions migrating(const TempDir& d) {
    OpenOptions o = options_for(d);
    o.create = false;
    o.migrate = true;
    return o;
}
}  // namespace

TEST_CASE("a version-1 registry is refused with the one command that upgrades it", "[registry][migrate]") {
    TempDir d;
    { auto reg = Registry::open(options_for(d)); put_target(reg, "db", target(20001)); }
    downgrade_to_version_1(d.sub("reg"));
    const std::string command = "tunnelctl --registry " + d.sub("reg") + " migrate";
    // (Catch's combined matchers hold references to their parts: built where they are used.)
    CHECK_THROWS_WITH(Registry::open(options_for(d)), Catch::Contains("schema version 1") && Catch::Contains(command));
    CHECK_THROWS_WITH(Reader(d.sub("reg")), Catch::Contains("schema version 1") && Catch::Contains(command));
}

TEST_CASE("migrate builds the fixed-port index and keeps every target", "[registry][migrate]") {
    TempDir d;
    {
        auto reg = Registry::open(options_for(d));
        put_target(reg, "db", target(20001));
        put_target(reg, "web", target(0));
        put_target(reg, "cache", target(20007));
    }
    downgrade_to_version_1(d.sub("reg"));
    {
        auto reg = Registry::open(migrating(d));
        CHECK(reg.opened_version() == 1);
        CHECK(reg.fixed_ports() == std::map<std::uint16_t, std::string>{{20001, "db"}, {20007, "cache"}});
    }
    auto reg = Registry::open(options_for(d));  // an ordinary open now
    CHECK(reg.opened_version() == kSchemaVersion);
    CHECK(reg.snapshot().size() == 3);
    CHECK(reg.get_target("cache")->fixed_port == 20007);
    // Running it again changes nothing.
    OpenOptions again = migrating(d);
    CHECK(Registry::open(again).opened_version() == kSchemaVersion);
}

TEST_CASE("a version-1 registry with one fixed port on two targets is not migrated half-way", "[registry][migrate]") {
    TempDir d;
    {
        auto reg = Registry::open(options_for(d));
        put_target(reg, "a", target(20001));
        put_target(reg, "b", target(20002));
    }
    downgrade_to_version_1(d.sub("reg"));
    {  // b takes a's port the way only a registry edited by hand could
        MDB_env* env;
        mdb_env_create(&env);
        mdb_env_set_maxdbs(env, 8);
        REQUIRE(mdb_env_open(env, d.sub("reg").c_str(), 0, 0640) == 0);
        MDB_txn* txn;
        mdb_txn_begin(env, nullptr, 0, &txn);
        MDB_dbi targets;
        mdb_dbi_open(txn, kDbTargets, 0, &targets);
        const std::string value = encode(target(20001));
        MDB_val k{1, const_cast<char*>("b")}, v{value.size(), const_cast<char*>(value.data())};
        REQUIRE(mdb_put(txn, targets, &k, &v, 0) == 0);
        REQUIRE(mdb_txn_commit(txn) == 0);
        mdb_env_close(env);
    }
    CHECK_THROWS_WITH(Registry::open(migrating(d)), Catch::Contains("\"a\" and \"b\" both have fixed port 20001"));
    CHECK_THROWS_WITH(Registry::open(options_for(d)), Catch::Contains("schema version 1"));  // still version 1
}

TEST_CASE("the fixed-port index follows every change and refuses a second target on a port", "[registry][migrate]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    put_target(reg, "a", target(20001));
    CHECK_THROWS_WITH(put_target(reg, "b", target(20001)), Catch::Contains("already the port of target \"a\""));
    put_target(reg, "a", target(20002));  // a moves: 20001 is free again
    put_target(reg, "b", target(20001));
    CHECK(reg.fixed_ports() == std::map<std::uint16_t, std::string>{{20001, "b"}, {20002, "a"}});
    reg.update_declared([](DeclaredTxn& t) { t.remove("a"); });
    CHECK(reg.fixed_ports() == std::map<std::uint16_t, std::string>{{20001, "b"}});
}

TEST_CASE("tunneld recreates live state of another schema version; others are told", "[registry][migrate]") {
    TempDir d;
    { auto reg = Registry::open(options_for(d)); }
    poke_meta(d.sub("reg/live"), kMetaSchemaVersion, std::string("\x01\0\0\0", 4));
    CHECK_THROWS_WITH(Registry::open(options_for(d)), Catch::Contains("schema version 1"));
    OpenOptions tunneld = options_for(d);
    tunneld.recreate_other_live = true;
    auto reg = Registry::open(tunneld);
    REQUIRE(reg.notices().size() == 1);
    CHECK_THAT(reg.notices()[0], Catch::Contains("another schema version"));
}

TEST_CASE("a full map is a clear error and leaves the committed state intact", "[registry]") {
    TempDir d;
    auto reg = Registry::open(options_for(d, 1 << 20));  // the smallest map: fills fast
    put_target(reg, "keep", target(20001));
    bool full = false;
    for (int i = 0; i < 10000 && !full; ++i) {
        try {
            reg.update_declared([&](DeclaredTxn& txn) {
                TargetRecord t = target();
                t.labels = {{"filler", std::string(1000, 'x')}};
                for (int j = 0; j < 50; ++j) txn.put("t" + std::to_string(i) + "-" + std::to_string(j), t);
            });
        } catch (const monitoring_proxy::lmdb::LmdbError& e) {
            CHECK(e.code() == MDB_MAP_FULL);
            CHECK_THAT(e.what(), Catch::Contains(d.sub("reg")));
            full = true;
        }
    }
    REQUIRE(full);
    CHECK(reg.get_target("keep")->fixed_port == 20001);
    // Reopening with a larger map grows it and the registry keeps working.
    Registry grown = Registry::open(options_for(d, 8 << 20));
    (void)grown;
}

TEST_CASE("the reader resolves live, unknown, not connected and forbidden paths", "[registry][reader]") {
    TempDir d;
    auto reg = Registry::open(options_for(d));
    TargetRecord t = target();
    t.path_prefixes = {"/metrics"};
    put_target(reg, "web1", t);
    put_target(reg, "web2", target());
    Reader reader(d.sub("reg"));
    CHECK(reader.resolve("nope", "/metrics").status == Resolution::kUnknown);
    CHECK(reader.resolve("web1", "/metrics").status == Resolution::kNotConnected);
    CHECK(reader.resolve("web1", "/secret").status == Resolution::kPathForbidden);
    reg.update_live([&](LiveTxn& l) { l.put_tunnel("web1", TunnelRecord{20011, 1, 0, "c", "f"}); });
    auto r = reader.resolve("web1", "/metrics");
    CHECK(r.status == Resolution::kLive);
    CHECK(r.port == 20011);
    reg.update_live([&](LiveTxn& l) { l.remove_tunnel("web1", 1); });
    CHECK(reader.resolve("web1", "/metrics").status == Resolution::kNotConnected);
    CHECK(reader.snapshot().size() == 2);
}

TEST_CASE("a reader survives the writer growing the map", "[registry][reader]") {
    TempDir d;
    { auto reg = Registry::open(options_for(d, 1 << 20)); put_target(reg, "first", target()); }
    Reader reader(d.sub("reg"));
    CHECK(reader.resolve("first", "/").status == Resolution::kNotConnected);

    // Another process grows the map far beyond the reader's mapping and fills it.
    pid_t child = fork();
    if (child == 0) {
        try {
            auto reg = Registry::open(options_for(d, 64 << 20));
            for (int i = 0; i < 40; ++i)
                reg.update_declared([&](DeclaredTxn& txn) {
                    TargetRecord t = target();
                    t.labels = {{"filler", std::string(1000, 'x')}};
                    for (int j = 0; j < 100; ++j) txn.put("g" + std::to_string(i) + "-" + std::to_string(j), t);
                });
            put_target(reg, "last", target());
        } catch (...) {
            _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(reader.resolve("last", "/").status == Resolution::kNotConnected);
    CHECK(reader.resolve("g39-99", "/").status == Resolution::kNotConnected);
    CHECK(reader.snapshot().size() == 4002);
}

TEST_CASE("a writer killed inside a transaction leaves the last committed state", "[registry]") {
    TempDir d;
    { auto reg = Registry::open(options_for(d)); put_target(reg, "committed", target(20001)); }
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t child = fork();
    if (child == 0) {
        auto reg = Registry::open(options_for(d));
        reg.update_declared([&](DeclaredTxn& txn) {
            for (int i = 0; i < 1000; ++i) txn.put("uncommitted" + std::to_string(i), target());
            (void)!write(ready[1], "x", 1);
            pause();  // killed here, mid-transaction, holding the writer lock
        });
        _exit(0);
    }
    char c;
    REQUIRE(read(ready[0], &c, 1) == 1);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    auto reg = Registry::open(options_for(d));  // the dead writer's lock is released with its process
    auto snap = reg.snapshot();
    REQUIRE(snap.size() == 1);
    CHECK(snap[0].name == "committed");
    put_target(reg, "after", target());  // and the registry is writable again
    CHECK(reg.get_target("after"));
    close(ready[0]);
    close(ready[1]);
}

TEST_CASE("new registries follow the permission policy", "[registry][permissions]") {
    TempDir d;
    OpenOptions o = options_for(d);
    o.group = "nogroup";
    ::umask(077);  // the policy holds whatever the writer's umask
    { auto reg = Registry::open(o); }
    ::umask(022);
    struct stat st {};
    REQUIRE(stat(d.sub("reg").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 02750);
    REQUIRE(stat(d.sub("reg/lock.mdb").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);
    REQUIRE(stat(d.sub("reg/data.mdb").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
    REQUIRE(stat(d.sub("reg/live/lock.mdb").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);
    CHECK(st.st_gid == 65534);
    o.group = "no-such-group-xyz";
    CHECK_THROWS_WITH(Registry::open(o), Catch::Contains("no-such-group-xyz"));
}

TEST_CASE("a corrupt live environment is recreated, declared targets kept", "[registry]") {
    TempDir d;
    { auto reg = Registry::open(options_for(d)); put_target(reg, "keep", target()); }
    {
        FILE* f = fopen(d.sub("reg/live/data.mdb").c_str(), "w");
        fputs("garbage garbage garbage", f);
        fclose(f);
    }
    auto reg = Registry::open(options_for(d));
    REQUIRE(reg.notices().size() == 1);
    CHECK_THAT(reg.notices()[0], Catch::Contains("recreated"));
    CHECK(reg.get_target("keep"));
}

TEST_CASE("a garbage declared environment is refused, not overwritten", "[registry]") {
    TempDir d;
    std::filesystem::create_directories(d.sub("reg"));
    {
        FILE* f = fopen(d.sub("reg/data.mdb").c_str(), "w");
        for (int i = 0; i < 1000; ++i) fputs("garbage!", f);
        fclose(f);
    }
    CHECK_THROWS_AS(Registry::open(options_for(d)), monitoring_proxy::lmdb::LmdbError);
    CHECK(std::filesystem::file_size(d.sub("reg/data.mdb")) == 8000);
}

TEST_CASE("after a reboot every recorded tunnel is stale", "[registry]") {
    TempDir d;
    {
        auto reg = Registry::open(options_for(d));
        reg.update_live([&](LiveTxn& l) {
            l.put_instance(1, current_instance());  // alive, but recorded under another boot id below
            l.put_tunnel("mine", TunnelRecord{20001, 1, 0, "c", "f"});
        });
    }
    poke_meta(d.sub("reg/live"), kMetaBootId, "00000000-0000-0000-0000-000000000000");
    auto reg = Registry::open(options_for(d));
    CHECK(reg.sweep_dead_instances() == std::vector<std::string>{"mine"});
    CHECK(reg.instances().empty());
}

TEST_CASE("a truncated data file is a clear error, not a crash", "[registry]") {
    TempDir d;
    {
        auto reg = Registry::open(options_for(d));
        for (int i = 0; i < 20; ++i) {
            TargetRecord t = target();
            t.labels = {{"filler", std::string(1000, 'x')}};
            put_target(reg, "t" + std::to_string(i), t);
        }
    }
    std::filesystem::resize_file(d.sub("reg/data.mdb"), 8192);
    CHECK_THROWS_WITH(Registry::open(options_for(d)), Catch::Contains("is truncated"));
    CHECK_THROWS_WITH(Reader(d.sub("reg")), Catch::Contains("is truncated"));
    CHECK(std::filesystem::file_size(d.sub("reg/data.mdb")) == 8192);  // left for the operator
}

TEST_CASE("a root writer gives every registry file to the owner of the registry directory", "[registry][permissions]") {
    // Only root can hand files to another user in the first place. CI and README's test command run as root:
    // anywhere else this case fails rather than passing without having run.
    INFO("this case must run as root (euid is " << ::geteuid() << ")");
    REQUIRE(::geteuid() == 0);
    TempDir d;
    { auto reg = Registry::open(options_for(d)); }
    // A reader's user left owning data.mdb: root takes it back for the registry's owner (root here).
    REQUIRE(::chown(d.sub("reg/data.mdb").c_str(), 65534, -1) == 0);
    { auto reg = Registry::open(options_for(d)); }
    struct stat st {};
    REQUIRE(stat(d.sub("reg/data.mdb").c_str(), &st) == 0);
    CHECK(st.st_uid == 0);
    // A registry owned by a service user (tunneld's, as the Debian package sets it up): an operator's root
    // tunnelctl leaves every file to that user, so tunneld can still write.
    for (const char* f : {"reg", "reg/data.mdb", "reg/lock.mdb", "reg/live", "reg/live/data.mdb", "reg/live/lock.mdb"})
        REQUIRE(::chown(d.sub(f).c_str(), 65534, -1) == 0);
    { auto reg = Registry::open(options_for(d)); }
    for (const char* f : {"reg/data.mdb", "reg/lock.mdb", "reg/live/data.mdb", "reg/live/lock.mdb"}) {
        CAPTURE(f);
        REQUIRE(stat(d.sub(f).c_str(), &st) == 0);
        CHECK(st.st_uid == 65534);
    }
}

namespace {
struct FileState {
    uid_t owner;
    gid_t group;
    mode_t mode;
    bool operator==(const FileState&) const = default;
};

FileState state_of(const std::string& path) {
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    return {st.st_uid, st.st_gid, st.st_mode & 07777};
}

// $MONITORING_PROXY_REGISTRY_GROUP unset for one test case, restored after it.
struct NoGroupEnv {
    std::optional<std::string> saved;
    NoGroupEnv() {
        if (const char* v = std::getenv(kGroupEnvVar)) saved = v;
        ::unsetenv(kGroupEnvVar);
    }
    ~NoGroupEnv() {
        if (saved) ::setenv(kGroupEnvVar, saved->c_str(), 1);
    }
};

OpenOptions read_only_options(const TempDir& d) {
    OpenOptions o = options_for(d);
    o.read_only = true;
    o.create = false;
    return o;
}
}  // namespace

TEST_CASE("a writer keeps the group an existing registry has unless told otherwise", "[registry][permissions]") {
    NoGroupEnv no_env;
    TempDir d;
    OpenOptions o = options_for(d);
    o.group = "nogroup";
    { auto reg = Registry::open(o); }
    o.group.clear();  // neither --registry-group nor $MONITORING_PROXY_REGISTRY_GROUP
    { auto reg = Registry::open(o); put_target(reg, "a", target()); }
    for (const char* f : {"reg", "reg/data.mdb", "reg/lock.mdb", "reg/live", "reg/live/lock.mdb"})
        CHECK(state_of(d.sub(f)).group == 65534);
    ::setenv(kGroupEnvVar, "root", 1);  // told otherwise
    { auto reg = Registry::open(o); }
    ::unsetenv(kGroupEnvVar);
    CHECK(state_of(d.sub("reg/data.mdb")).group == 0);
    CHECK(state_of(d.sub("reg/live/lock.mdb")).group == 0);
}

TEST_CASE("a read-only open changes no owner, group or mode", "[registry][permissions]") {
    TempDir d;
    OpenOptions o = options_for(d);
    o.group = "nogroup";
    { auto reg = Registry::open(o); put_target(reg, "a", target()); }
    REQUIRE(::chmod(d.sub("reg/data.mdb").c_str(), 0644) == 0);  // off-policy: a writer would restore 0640
    const std::vector<std::string> files = {"reg", "reg/data.mdb", "reg/lock.mdb", "reg/live", "reg/live/data.mdb"};
    std::vector<FileState> before;
    for (const auto& f : files) before.push_back(state_of(d.sub(f)));
    OpenOptions ro = read_only_options(d);
    ro.group = "root";  // even when told a group
    {
        auto reg = Registry::open(ro);
        CHECK(reg.snapshot().size() == 1);
    }
    for (std::size_t i = 0; i < files.size(); ++i) CHECK((state_of(d.sub(files[i])) == before[i]));
}

TEST_CASE("a read-only open creates no registry and names the missing one", "[registry]") {
    TempDir d;
    CHECK_THROWS_AS(Registry::open(read_only_options(d)), MissingRegistry);
    CHECK_THROWS_WITH(Registry::open(read_only_options(d)), Catch::Contains(d.sub("reg")));
    CHECK_FALSE(std::filesystem::exists(d.sub("reg")));
    std::filesystem::create_directories(d.sub("reg"));  // an empty directory is no registry either
    CHECK_THROWS_AS(Registry::open(read_only_options(d)), MissingRegistry);
    CHECK(std::filesystem::is_empty(d.sub("reg")));
}

TEST_CASE("a read-only open without live state reads every target as disconnected", "[registry]") {
    TempDir d;
    OpenOptions o = options_for(d);
    o.live = false;
    { auto reg = Registry::open(o); put_target(reg, "a", target()); }
    auto reg = Registry::open(read_only_options(d));
    auto snapshot = reg.snapshot();
    REQUIRE(snapshot.size() == 1);
    CHECK_FALSE(snapshot[0].tunnel);
    CHECK_FALSE(std::filesystem::exists(d.sub("reg/live")));
}

TEST_CASE("a lock file a read-only open recreates keeps the readers' access", "[registry][permissions]") {
    TempDir d;
    OpenOptions o = options_for(d);
    o.group = "nogroup";
    { auto reg = Registry::open(o); }
    REQUIRE(::unlink(d.sub("reg/lock.mdb").c_str()) == 0);  // e.g. data.mdb restored from a backup alone
    { auto reg = Registry::open(read_only_options(d)); }
    auto lock = state_of(d.sub("reg/lock.mdb"));
    CHECK(lock.mode == 0660);
    CHECK(lock.group == 65534);
}


TEST_CASE("a listing skips an undecodable record only when asked, and names it", "[registry][reader]") {
    TempDir d;
    {
        auto reg = Registry::open(options_for(d));
        put_target(reg, "web1", target());
        put_target(reg, "web2", target());
    }
    std::string future = encode(target());
    future[0] = static_cast<char>(0x7f);  // a record version no decoder knows: a newer writer's
    poke(d.sub("reg"), kDbTargets, "web2", future);
    Reader reader(d.sub("reg"));
    CHECK_THROWS_AS(reader.snapshot(), DecodeError);  // discovery: fail rather than list without web2
    std::vector<UnreadableRecord> unreadable;
    auto entries = reader.snapshot(&unreadable);
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].name == "web1");
    REQUIRE(unreadable.size() == 1);
    CHECK(unreadable[0].kind == "target");
    CHECK(unreadable[0].name == "web2");
    CHECK_THAT(unreadable[0].error, Catch::Contains("version"));
    CHECK(reader.resolve("web1", "/metrics").status == Resolution::kNotConnected);  // the rest stays readable
}
