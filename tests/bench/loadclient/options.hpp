// Command line of the load client.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace loadclient {

// How session i names its forward: a numbered port (bind address "localhost", port base+i, as OpenSSH's
// `-R PORT:...`) or a target name (bind address = name, port 80, as `-R NAME:80:...`).
struct ForwardSpec {
    bool named = false;
    int port_base = 0;            // numbered: port of session 0
    std::string name_pattern;     // named: "{i}" is replaced by the session index
    std::string bind_address(int index) const;
    int bind_port(int index) const;
};

// A server to connect to.
struct Destination {
    std::string host;
    int port = 0;
    bool operator==(const Destination&) const = default;
};

// "HOST:PORT[,HOST:PORT...]" (IPv6 hosts in brackets: [::1]:22). Throws std::invalid_argument on anything else.
std::vector<Destination> parse_destinations(const std::string& text);

// Where a session whose established session ended makes its `attempt`-th (1-based) try to reconnect: the list in
// turn, starting again at its head, as a host's tunnel wrapper moves on to the next proxy of its list.
const Destination& reconnect_destination(const std::vector<Destination>& list, int attempt);

struct Options {
    std::string host = "127.0.0.1";
    int port = 22;
    std::string user = "root";
    std::string identity;
    int sessions = 1;
    int concurrency = 50;            // sessions in connect/auth/forward at the same time
    ForwardSpec forward;
    std::string cipher;              // empty: libssh default
    std::size_t body_bytes = 1024;
    double hold_seconds = 0;         // after all forwards are up (or failed); < 0: until SIGTERM/SIGINT
    double setup_timeout = 60;       // per attempt
    int retries = 0;                 // extra attempts for a session whose setup failed
    double progress_interval = 1.0;  // seconds between progress lines; 0: none
    std::vector<Destination> reconnect_to;  // empty: a session the server closes stays closed (and counts as dropped)
    bool verbose = false;
};

// Parses argv; prints usage and exits on --help or on an error.
Options parse_options(int argc, char** argv);

}  // namespace loadclient
