#include "load_session.hpp"

#include <libssh/server.h>  // ssh_set_message_callback: the client receives forwarded-tcpip as a message
#include <sys/epoll.h>

#include <algorithm>
#include <cstdio>

namespace loadclient {

namespace {

// Bytes handed to libssh per write call and per drive: bounds the memory a slow reader can pin.
constexpr std::size_t kMaxWriteChunk = 256 * 1024;

}  // namespace

// One accepted forwarded-tcpip channel and its exporter state. Callbacks only record what happened; bytes are
// written after the poll round, outside libssh's packet processing.
struct LoadSession::Channel {
    ssh_channel channel = nullptr;
    ssh_channel_callbacks_struct callbacks{};
    HttpResponder http;
    bool remote_eof = false;
    bool remote_closed = false;
    bool broken = false;
    std::uint64_t requests_counted = 0;

    explicit Channel(const std::string& response) : http(response) {}

    static int on_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr, void* self) noexcept {
        auto* c = static_cast<Channel*>(self);
        if (is_stderr) return static_cast<int>(len);
        if (!c->http.feed(static_cast<const char*>(data), len)) c->broken = true;
        return static_cast<int>(len);
    }
    static void on_eof(ssh_session, ssh_channel, void* self) noexcept { static_cast<Channel*>(self)->remote_eof = true; }
    static void on_close(ssh_session, ssh_channel, void* self) noexcept {
        static_cast<Channel*>(self)->remote_closed = true;
    }

    // Detaches the callbacks first: libssh keeps the channel until the peer's CLOSE arrives and must not call
    // into freed memory meanwhile.
    void free_channel() {
        if (channel == nullptr) return;
        ssh_remove_channel_callbacks(channel, &callbacks);
        ssh_channel_free(channel);
        channel = nullptr;
    }
};

LoadSession::LoadSession(int index, const Options& options, ssh_key key, const std::string& response,
                         SessionTotals& totals)
    : index_(index), options_(options), key_(key), response_(response), totals_(totals),
      destination_{options.host, options.port} {}

LoadSession::~LoadSession() { release(); }

void LoadSession::release() {
    for (auto& c : channels_) c->free_channel();
    channels_.clear();
    if (event_ != nullptr) {
        ssh_event_remove_session(event_, ssh_);
        ssh_event_free(event_);
        event_ = nullptr;
    }
    if (ssh_ != nullptr) {
        if (ssh_is_connected(ssh_)) ssh_disconnect(ssh_);
        ssh_free(ssh_);
        ssh_ = nullptr;
    }
    fd_ = -1;
}

void LoadSession::fail(const std::string& why) {
    error_ = why;
    if (ssh_ != nullptr) {
        const char* detail = ssh_get_error(ssh_);
        if (detail != nullptr && *detail != '\0') error_ += ": " + std::string(detail);
    }
    release();
    state_ = State::Failed;
}

void LoadSession::stop() {
    release();
    if (state_ != State::Failed) state_ = State::Closed;
}

void LoadSession::start(double now) {
    release();
    ++attempts_;
    error_.clear();
    tcp_connected_ = false;
    setup_started_ = now;
    ssh_ = ssh_new();
    if (ssh_ == nullptr) return fail("ssh_new failed");
    const int verbosity = options_.verbose ? SSH_LOG_WARNING : SSH_LOG_NOLOG;
    const int port = destination_.port;
    const int no = 0;
    const int yes = 1;
    bool ok = ssh_options_set(ssh_, SSH_OPTIONS_HOST, destination_.host.c_str()) == SSH_OK &&
              ssh_options_set(ssh_, SSH_OPTIONS_PORT, &port) == SSH_OK &&
              ssh_options_set(ssh_, SSH_OPTIONS_USER, options_.user.c_str()) == SSH_OK &&
              ssh_options_set(ssh_, SSH_OPTIONS_LOG_VERBOSITY, &verbosity) == SSH_OK &&
              ssh_options_set(ssh_, SSH_OPTIONS_PROCESS_CONFIG, &no) == SSH_OK &&
              // libssh leaves Nagle on by default: a small channel packet (open confirmation, a short
              // response) then waits for the peer's delayed ACK, ~40 ms on Linux, on every new connection.
              ssh_options_set(ssh_, SSH_OPTIONS_NODELAY, &yes) == SSH_OK &&
              // A benchmark against throw-away servers: there is no known_hosts to check against.
              ssh_options_set(ssh_, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") == SSH_OK &&
              ssh_options_set(ssh_, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") == SSH_OK;
    if (ok && !options_.cipher.empty())
        ok = ssh_options_set(ssh_, SSH_OPTIONS_CIPHERS_C_S, options_.cipher.c_str()) == SSH_OK &&
             ssh_options_set(ssh_, SSH_OPTIONS_CIPHERS_S_C, options_.cipher.c_str()) == SSH_OK;
    if (!ok) return fail("setting session options failed");
    ssh_set_message_callback(ssh_, &LoadSession::on_message, this);
    ssh_set_blocking(ssh_, 0);
    state_ = State::Connecting;
    advance_setup(false);
}

void LoadSession::check_timeout(double now) {
    if (in_setup() && now - setup_started_ > options_.setup_timeout) fail("setup timed out");
}

void LoadSession::drive(double now, bool writable) {
    if (in_setup()) {
        advance_setup(writable);
        if (state_ == State::Established) forwarded_at_ = now;
        return;
    }
    if (state_ == State::Established) pump_established();
}

void LoadSession::advance_setup(bool writable) {
    if (state_ == State::Connecting) {
        if (writable) tcp_connected_ = true;
        const int rc = ssh_connect(ssh_);
        if (fd_ < 0) fd_ = ssh_get_fd(ssh_);
        if (rc == SSH_AGAIN) return;
        if (rc != SSH_OK) return fail("connect");
        tcp_connected_ = true;
        state_ = State::Authenticating;
    }
    if (state_ == State::Authenticating) {
        const int rc = ssh_userauth_publickey(ssh_, nullptr, key_);
        if (rc == SSH_AUTH_AGAIN) return;
        if (rc != SSH_AUTH_SUCCESS) return fail(rc == SSH_AUTH_DENIED ? "public key refused" : "auth");
        state_ = State::Forwarding;
    }
    if (state_ == State::Forwarding) {
        const std::string address = options_.forward.bind_address(index_);
        int bound_port = 0;
        const int rc =
            ssh_channel_listen_forward(ssh_, address.c_str(), options_.forward.bind_port(index_), &bound_port);
        if (rc == SSH_AGAIN) return;
        if (rc != SSH_OK) return fail("tcpip-forward " + address + ":" + std::to_string(options_.forward.bind_port(index_)) + " refused");
        // From now on one private event per session: libssh's internal polls then touch only this socket, and
        // callbacks of other sessions never run inside this session's calls.
        event_ = ssh_event_new();
        if (event_ == nullptr || ssh_event_add_session(event_, ssh_) != SSH_OK) return fail("ssh_event_add_session");
        state_ = State::Established;
    }
}

int LoadSession::on_message(ssh_session, ssh_message message, void* self) noexcept {
    auto* s = static_cast<LoadSession*>(self);
    try {
        if (ssh_message_type(message) != SSH_REQUEST_CHANNEL_OPEN ||
            ssh_message_subtype(message) != SSH_CHANNEL_FORWARDED_TCPIP)
            return 1;  // libssh's default reply (failure), like OpenSSH's client for unknown requests
        auto c = std::make_unique<Channel>(s->response_);
        c->channel = ssh_message_channel_request_open_reply_accept(message);
        if (c->channel == nullptr) {
            ++s->totals_.channel_errors;
            return 0;
        }
        ssh_callbacks_init(&c->callbacks);
        c->callbacks.userdata = c.get();
        c->callbacks.channel_data_function = &Channel::on_data;
        c->callbacks.channel_eof_function = &Channel::on_eof;
        c->callbacks.channel_close_function = &Channel::on_close;
        ssh_set_channel_callbacks(c->channel, &c->callbacks);
        ++s->totals_.channels;
        s->totals_.initial_window = ssh_channel_window_size(c->channel);
        s->channels_.push_back(std::move(c));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loadclient: session %d: accepting a channel failed: %s\n", s->index_, e.what());
        return 1;
    }
}

void LoadSession::pump_established() {
    const int rc = ssh_event_dopoll(event_, 0);
    if (rc == SSH_ERROR || !ssh_is_connected(ssh_)) {
        error_ = "server closed the session";
        const char* detail = ssh_get_error(ssh_);
        if (detail != nullptr && *detail != '\0') error_ += ": " + std::string(detail);
        release();
        state_ = State::Closed;
        return;
    }
    serve_channels();
}

void LoadSession::serve_channels() {
    for (auto it = channels_.begin(); it != channels_.end();) {
        Channel& c = **it;
        bool finished = c.remote_closed || c.broken;
        std::size_t budget = kMaxWriteChunk;
        while (!finished && budget > 0 && !(ssh_get_poll_flags(ssh_) & SSH_WRITE_PENDING)) {
            const std::string_view due = c.http.pending();
            const std::size_t window = ssh_channel_window_size(c.channel);
            const std::size_t n = std::min({due.size(), window, budget});
            if (n == 0) break;
            const int written = ssh_channel_write(c.channel, due.data(), static_cast<uint32_t>(n));
            if (written < 0) {
                c.broken = true;
                break;
            }
            if (written == 0) break;
            c.http.advance(static_cast<std::size_t>(written));
            totals_.bytes_sent += static_cast<std::uint64_t>(written);
            budget -= static_cast<std::size_t>(written);
        }
        totals_.requests += c.http.requests() - c.requests_counted;
        c.requests_counted = c.http.requests();
        if (c.broken) ++totals_.channel_errors;
        // Done when the client asked to close and everything is out, or it half-closed with nothing due.
        if (c.http.done() || (c.remote_eof && c.http.pending().empty())) {
            ssh_channel_send_eof(c.channel);
            finished = true;
        }
        if (c.broken) finished = true;
        if (finished) {
            c.free_channel();
            it = channels_.erase(it);
        } else {
            ++it;
        }
    }
}

std::uint32_t LoadSession::wanted_events() const {
    if (ssh_ == nullptr || fd_ < 0) return 0;
    std::uint32_t events = EPOLLIN;
    if ((state_ == State::Connecting && !tcp_connected_) || (ssh_get_poll_flags(ssh_) & SSH_WRITE_PENDING))
        events |= EPOLLOUT;
    return events;
}

bool LoadSession::has_immediate_work() const {
    if (state_ != State::Established || ssh_ == nullptr) return false;
    if (ssh_get_poll_flags(ssh_) & SSH_WRITE_PENDING) return false;  // wait for EPOLLOUT
    for (const auto& c : channels_)
        if (!c->http.pending().empty() && ssh_channel_window_size(c->channel) > 0) return true;
    return false;
}

}  // namespace loadclient
