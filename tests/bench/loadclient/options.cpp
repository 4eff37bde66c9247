#include "options.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace loadclient {

std::string ForwardSpec::bind_address(int index) const {
    if (!named) return "localhost";
    std::string out = name_pattern;
    const auto pos = out.find("{i}");
    if (pos != std::string::npos) out.replace(pos, 3, std::to_string(index));
    return out;
}

int ForwardSpec::bind_port(int index) const { return named ? 80 : port_base + index; }

std::vector<Destination> parse_destinations(const std::string& text) {
    std::vector<Destination> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, comma - start);
        const std::size_t colon = item.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == item.size())
            throw std::invalid_argument("expected HOST:PORT, got '" + item + "'");
        std::string host = item.substr(0, colon);
        if (host.front() == '[') {
            if (host.size() < 3 || host.back() != ']') throw std::invalid_argument("unbalanced brackets in '" + item + "'");
            host = host.substr(1, host.size() - 2);
        } else if (host.find(':') != std::string::npos) {
            throw std::invalid_argument("an IPv6 address needs brackets: '" + item + "'");
        }
        const std::string port_text = item.substr(colon + 1);
        char* end = nullptr;
        errno = 0;
        const long port = std::strtol(port_text.c_str(), &end, 10);
        if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
            throw std::invalid_argument("port must be 1-65535 in '" + item + "'");
        out.push_back(Destination{host, static_cast<int>(port)});
        start = comma + 1;
    }
    return out;
}

const Destination& reconnect_destination(const std::vector<Destination>& list, int attempt) {
    if (list.empty()) throw std::invalid_argument("reconnect_destination: empty list");
    const int index = attempt < 1 ? 0 : (attempt - 1) % static_cast<int>(list.size());
    return list[static_cast<std::size_t>(index)];
}

namespace {

const char* const kUsage =
    "usage: loadclient --identity KEY [options]\n"
    "Holds many SSH sessions in one process; each authenticates with KEY, requests one reverse forward\n"
    "(tcpip-forward) and answers forwarded-tcpip channels with a fixed HTTP/1.1 response.\n"
    "  --host ADDR            server address (127.0.0.1)\n"
    "  --port N               server port (22)\n"
    "  --user NAME            login name (root)\n"
    "  --identity KEY         private key file (OpenSSH format, no passphrase)\n"
    "  --sessions N           number of sessions (1)\n"
    "  --concurrency N        sessions in connect/auth/forward setup at once (50)\n"
    "  --forward-spec SPEC    port:BASE   -> session i forwards localhost:BASE+i (like -R BASE+i:...)\n"
    "                         name:PATTERN -> session i forwards NAME:80, {i} in PATTERN replaced by i\n"
    "  --cipher NAME          cipher both ways (e.g. chacha20-poly1305@openssh.com, aes128-gcm@openssh.com)\n"
    "  --body-bytes N         size of the HTTP response body (1024)\n"
    "  --hold-seconds S       keep the sessions this long once setup is over; -1 until SIGTERM (0)\n"
    "  --setup-timeout S      give up on one setup attempt after S seconds (60)\n"
    "  --retries N            extra setup attempts per session, jittered exponential backoff 0.25-5 s (0)\n"
    "  --progress-interval S  seconds between progress lines, 0 for none (1)\n"
    "  --reconnect-to LIST    HOST:PORT[,HOST:PORT...]: when the server closes an established session, set it\n"
    "                         up again at once against these in turn (each failed try moves to the next one,\n"
    "                         with --retries and its backoff), as a host's tunnel wrapper moves to the next\n"
    "                         proxy; without it a closed session stays closed and counts as dropped\n"
    "  --verbose              libssh warnings on stderr\n"
    "Output: one JSON object per line on stdout (events: forwarded, all_forwarded, all_reconnected, progress,\n"
    "done).\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr, "loadclient: %s\n%s", message.c_str(), kUsage);
    std::exit(2);
}

long parse_long(const std::string& flag, const std::string& value, long lo, long hi) {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(value.c_str(), &end, 10);
    if (errno != 0 || end == value.c_str() || *end != '\0' || v < lo || v > hi)
        usage_error(flag + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got '" + value + "'");
    return v;
}

double parse_double(const std::string& flag, const std::string& value) {
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || *end != '\0') usage_error(flag + ": expected a number, got '" + value + "'");
    return v;
}

ForwardSpec parse_forward_spec(const std::string& value) {
    ForwardSpec spec;
    if (value.rfind("port:", 0) == 0) {
        spec.port_base = static_cast<int>(parse_long("--forward-spec", value.substr(5), 1, 65535));
    } else if (value.rfind("name:", 0) == 0 && value.size() > 5) {
        spec.named = true;
        spec.name_pattern = value.substr(5);
    } else {
        usage_error("--forward-spec: expected port:BASE or name:PATTERN, got '" + value + "'");
    }
    return spec;
}

}  // namespace

Options parse_options(int argc, char** argv) {
    Options o;
    bool have_forward = false;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (flag == "--verbose") {
            o.verbose = true;
            continue;
        }
        if (i + 1 >= argc) usage_error(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--host") o.host = value;
        else if (flag == "--port") o.port = static_cast<int>(parse_long(flag, value, 1, 65535));
        else if (flag == "--user") o.user = value;
        else if (flag == "--identity") o.identity = value;
        else if (flag == "--sessions") o.sessions = static_cast<int>(parse_long(flag, value, 1, 100000));
        else if (flag == "--concurrency") o.concurrency = static_cast<int>(parse_long(flag, value, 1, 100000));
        else if (flag == "--forward-spec") { o.forward = parse_forward_spec(value); have_forward = true; }
        else if (flag == "--cipher") o.cipher = value;
        else if (flag == "--body-bytes") o.body_bytes = static_cast<std::size_t>(parse_long(flag, value, 0, 1L << 30));
        else if (flag == "--hold-seconds") o.hold_seconds = parse_double(flag, value);
        else if (flag == "--setup-timeout") o.setup_timeout = parse_double(flag, value);
        else if (flag == "--retries") o.retries = static_cast<int>(parse_long(flag, value, 0, 1000));
        else if (flag == "--progress-interval") o.progress_interval = parse_double(flag, value);
        else if (flag == "--reconnect-to") {
            try {
                o.reconnect_to = parse_destinations(value);
            } catch (const std::invalid_argument& e) {
                usage_error("--reconnect-to: " + std::string(e.what()));
            }
        }
        else usage_error("unknown option " + flag);
    }
    if (o.identity.empty()) usage_error("--identity is required");
    if (!have_forward) usage_error("--forward-spec is required");
    if (!o.forward.named && o.forward.port_base + o.sessions - 1 > 65535)
        usage_error("--forward-spec port base + sessions exceeds 65535");
    return o;
}

}  // namespace loadclient
