#include "discovery.hpp"
#include "metrics.hpp"
#include "monitoring_proxy/codec.hpp"
#include "status_page.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

using namespace monitoring_proxy;
using namespace monitoring_proxy::tunnel;
using registry::SnapshotEntry;
using registry::TargetRecord;
using registry::TunnelRecord;

namespace {
std::vector<SnapshotEntry> sample_entries() {
    TargetRecord web;
    web.labels = {{"env", "prod"}, {"team", "o\"ps"}};
    TargetRecord db;
    db.metrics_path = "/probe";
    db.labels = {{"env", "staging"}, {"instance", "db.example"}};
    std::vector<SnapshotEntry> e;
    e.push_back({"db", db, std::nullopt});
    e.push_back({"orphan", std::nullopt, TunnelRecord{20009, 1, 1700000000000, "10.0.0.9:1", "SHA256:o"}});
    e.push_back({"web1", web, TunnelRecord{20001, 1, 1700000000500, "203.0.113.7:5123", "SHA256:w"}});
    return e;
}

CountersSnapshot sample_requests() {
    CountersSnapshot s;
    CounterValues v;
    v.requests = 3;
    v.responses_by_class[1] = 2;
    v.responses_by_class[4] = 1;
    v.bytes_sent = 4096;
    v.last_unix_ms = 1700000100000;
    v.last_status = 502;
    v.last_duration_ms = 12;
    s.targets.push_back({"web1", v});
    s.totals.requests = 5;
    s.totals.outcomes[static_cast<std::size_t>(Outcome::kUnknown)] = 2;
    return s;
}
}  // namespace

TEST_CASE("discovery lists every declared target with stable labels", "[render][discovery]") {
    auto json = render_discovery(sample_entries(), {"proxy:80", {}});
    CHECK_THAT(json, Catch::Contains(R"({"targets":["proxy:80"],"labels":{"__metrics_path__":"/db/probe","tunnel":"db","env":"staging","instance":"db.example"}})"));
    CHECK_THAT(json, Catch::Contains(R"({"targets":["proxy:80"],"labels":{"__metrics_path__":"/web1/metrics","tunnel":"web1","instance":"web1","env":"prod","team":"o\"ps"}})"));
    CHECK_THAT(json, !Catch::Contains("orphan"));  // undeclared tunnels are not scraped
    // Connecting or disconnecting must not change a label.
    auto entries = sample_entries();
    entries[2].tunnel.reset();
    CHECK(render_discovery(entries, {"proxy:80", {}}) == json);
    CHECK(render_discovery({}, {"proxy:80", {}}) == "[]\n");
}

TEST_CASE("discovery filters by labels", "[render][discovery]") {
    std::string error;
    auto filters = parse_label_filters("x=1&label=env%3Dprod&label=tunnel=web1", error);
    REQUIRE(filters);
    CHECK(filters->size() == 2);
    auto json = render_discovery(sample_entries(), {"proxy:80", *filters});
    CHECK_THAT(json, Catch::Contains("web1"));
    CHECK_THAT(json, !Catch::Contains("\"db\""));
    CHECK(render_discovery(sample_entries(), {"p", {{"env", "none"}}}) == "[]\n");
    CHECK_FALSE(parse_label_filters("label=noequals", error));
    CHECK_THAT(error, Catch::Contains("label=NAME=VALUE"));
    CHECK_FALSE(parse_label_filters("label=%zz", error));
    CHECK_FALSE(parse_label_filters("label=bad-name=x", error));
}

TEST_CASE("metrics expose targets, tunnels, requests and tunneld counters", "[render][metrics]") {
    auto entries = sample_entries();
    auto requests = sample_requests();
    using registry::encode_counter_key;
    using registry::TunneldCounter;
    std::map<std::string, std::uint64_t> counters{{encode_counter_key(TunneldCounter::kSessions), 7},
                                                  {encode_counter_key(TunneldCounter::kAuthFailures, "unknown_key"), 3},
                                                  {encode_counter_key(TunneldCounter::kConnects, "web1"), 4},
                                                  {encode_counter_key(TunneldCounter::kTakeovers, "web1"), 1},
                                                  {"not a valid key", 9},         // the text keys of old tunnelds
                                                  {std::string(1, '\xee') + "x", 9}};  // an id of a newer tunneld
    auto text = render_metrics({entries, counters, requests});
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_targets 2\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnels_connected 1\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_up{tunnel=\"db\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_up{tunnel=\"web1\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_connected_since_seconds{tunnel=\"web1\"} 1700000000.500\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_connects_total{tunnel=\"web1\"} 4\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_takeovers_total{tunnel=\"db\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_responses_total{tunnel=\"web1\",code=\"5xx\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_last_scrape_duration_seconds{tunnel=\"web1\"} 0.012\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_requests_total{outcome=\"unknown_target\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunneld_sessions_total 7\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunneld_auth_failures_total{reason=\"unknown_key\"} 3\n"));
    CHECK_THAT(text, !Catch::Contains("orphan"));
    CHECK_THAT(text, !Catch::Contains("not a valid key"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_registry_unreadable_records 0\n"));
    CHECK_THAT(render_metrics({entries, counters, requests, nullptr, 2}),
               Catch::Contains("monitoring_proxy_registry_unreadable_records 2\n"));

    // The real promtool agrees it is a valid exposition. install-deps.sh installs it (package prometheus):
    // without it this check fails instead of passing unchecked.
    const char* promtool = "/usr/bin/promtool";
    INFO(promtool << " is missing: ./docker/install-deps.sh test installs it (package prometheus)");
    REQUIRE(::access(promtool, X_OK) == 0);
    std::string path = "/tmp/mp-render-metrics-" + std::to_string(::getpid()) + ".txt";
    std::ofstream(path) << text;
    int rc = std::system((std::string(promtool) + " check metrics < " + path + " > " + path + ".out 2>&1").c_str());
    std::ifstream out(path + ".out");
    std::string report((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
    std::remove(path.c_str());
    std::remove((path + ".out").c_str());
    INFO(report);
    CHECK(rc == 0);
}

TEST_CASE("the status page puts problems first and escapes everything", "[render][status]") {
    auto entries = sample_entries();
    entries[0].target->labels.push_back({"note", "<script>alert(1)</script>"});
    auto rows = status_rows(entries, sample_requests());
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].name == "db");      // not connected
    CHECK(rows[0].severity == 2);
    CHECK(rows[1].name == "web1");    // connected, last scrape 502
    CHECK(rows[1].problem == "last scrape failed (502)");
    CHECK(rows[2].name == "orphan");  // warning
    auto html = render_status_html(rows, 1700000200000, 10);
    CHECK_THAT(html, Catch::Contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    CHECK_THAT(html, Catch::Contains("&lt;script&gt;"));
    CHECK_THAT(html, !Catch::Contains("<script>"));
    CHECK_THAT(html, !Catch::Contains("http://"));  // no external assets
    CHECK(html.find("data-target=\"db\"") < html.find("data-target=\"web1\""));
    auto json = render_status_json(rows, 1700000200000);
    CHECK_THAT(json, Catch::Contains(R"x("name":"web1","declared":true,"state":"connected","problem":"last scrape failed (502)")x"));
    CHECK_THAT(json, Catch::Contains(R"("last_scrape":{"time":"2023-11-14T22:15:00Z","status":502,"duration_ms":12})"));
}

TEST_CASE("the status page lists invitations, open ones first, with their uses and never a secret") {
    using monitoring_proxy::registry::InviteRecord;
    const std::int64_t now_ms = 1800000000000;
    InviteRecord open, spent;
    open.secret_sha256 = std::string(32, 'S');
    open.expires_unix = now_ms / 1000 + 60, open.uses_left = 1;
    spent.secret_sha256 = std::string(32, 'S');
    spent.expires_unix = now_ms / 1000 + 60;
    spent.uses = {{now_ms / 1000 - 5, "SHA256:used"}};
    const Invites invites{{"a-spent", spent}, {"b-open", open}};
    const std::string json = render_status_json({}, now_ms, invites);
    CHECK(json.find("\"invitations\":[\n{\"name\":\"b-open\",\"state\":\"open\"") != std::string::npos);
    CHECK(json.find("{\"name\":\"a-spent\",\"state\":\"spent\"") != std::string::npos);
    CHECK(json.find("\"fingerprint\":\"SHA256:used\"") != std::string::npos);
    const std::string html = render_status_html({}, now_ms, 10, invites);
    CHECK(html.find("data-invite=\"b-open\"") < html.find("data-invite=\"a-spent\""));
    CHECK(html.find("SSSS") == std::string::npos);
    CHECK(json.find("SSSS") == std::string::npos);
    CHECK(render_status_html({}, now_ms, 10).find("Invitations") == std::string::npos);
}

TEST_CASE("cluster metrics: etcd state, nodes, and the holder on a series of its own", "[render][metrics][cluster]") {
    auto entries = sample_entries();  // web1 connected here, db not
    auto requests = sample_requests();
    std::map<std::string, std::uint64_t> counters;
    CHECK_THAT(render_metrics({entries, counters, requests}), !Catch::Contains("cluster_"));

    ClusterMetricsInput cluster;
    cluster.state = {"node-a", registry::EtcdState::kDegraded, 1, 2};
    cluster.nodes = {{"node-a", {{0x7f000001, 80}, 1, 5, true}}, {"node-b", {{0x7f000002, 80}, 3, 5, false}}};
    cluster.tunnels = {{"db", {"node-b", {0x7f000002, 80}, 1, "SHA256:k", "c"}}};
    auto text = render_metrics({entries, counters, requests, &cluster});
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_cluster_etcd_up 0\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_cluster_node_alive{node=\"node-b\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_cluster_node_tunnels{node=\"node-b\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_cluster_tunnel_holder{tunnel=\"web1\",node=\"node-a\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_cluster_tunnel_holder{tunnel=\"db\",node=\"node-b\"} 1\n"));
    // The target's own series carry no node label, so they stay the same series when the tunnel moves.
    CHECK_THAT(text, Catch::Contains("monitoring_proxy_tunnel_up{tunnel=\"db\"} 0\n"));
}


TEST_CASE("the status page lists the records it skipped, escaped", "[render][status]") {
    const std::vector<registry::UnreadableRecord> unreadable{{"target", "web<2>", "unknown record version 127"}};
    const std::string json = render_status_json({}, 1700000200000, {}, nullptr, unreadable);
    CHECK_THAT(json, Catch::Contains(R"("unreadable":[{"kind":"target","name":"web<2>","error":"unknown record version 127"}])"));
    CHECK_THAT(render_status_json({}, 1700000200000), Catch::Contains(R"("unreadable":[])"));
    const std::string html = render_status_html({}, 1700000200000, 10, {}, nullptr, unreadable);
    CHECK_THAT(html, Catch::Contains("id=\"unreadable\""));
    CHECK_THAT(html, Catch::Contains("web&lt;2&gt;"));
    CHECK_THAT(render_status_html({}, 1700000200000, 10), !Catch::Contains("id=\"unreadable\""));
}
