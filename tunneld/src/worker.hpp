// A worker thread: owns one epoll set with everything it serves (its sessions' sockets, tunnel listeners, relayed
// TCP connections, its mailbox) and sleeps in epoll_wait. Each session has its OWN ssh_event holding only its
// socket: libssh polls the whole event a session is in from inside calls made for that session (channel open,
// write, read, free, keepalive), and when another session's socket fails during such a nested poll, libssh
// marks the CALLING session as failed (ssh_handle_packets sets SSH_SESSION_STATE_ERROR, with no error text,
// whenever the poll context reports an error). With one event per session, a libssh call for session A can
// only ever run A's socket callbacks, so one client hanging up never breaks another session.
//
// Re-entrancy rule: libssh callbacks (messages, channel data/eof/close) run inside ssh_event_dopoll and inside
// any libssh call that polls (channel open, read). They only send, set flags and queue work; containers are
// changed and objects freed only in the worker loop between rounds (collect_garbage).
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "forward_policy.hpp"
#include "server_context.hpp"

namespace tunneld {

class Worker;
struct Session;

using Clock = std::chrono::steady_clock;

// Anything registered in the worker's epoll set (epoll_event.data.ptr points to one).
struct Pollable {
    enum class Kind { kMailbox, kListener, kRelay, kSession };
    explicit Pollable(Kind k) : kind(k) {}
    Kind kind;
    bool dead = false;
};

// One tcpip-forward: a listener on a loopback address of its own serving a target (plus 127.0.0.1:port for a
// declared fixed port, which hand-written nginx blocks use).
struct Forward : Pollable {
    Forward() : Pollable(Kind::kListener) {}
    std::uint64_t id = 0;
    Session* session = nullptr;
    std::string target;
    std::uint32_t address = 0;  // host byte order; what the registry records
    std::uint16_t port = 0;
    std::string requested_address;  // echoed in forwarded-tcpip opens: OpenSSH matches on it
    std::uint32_t requested_port = 0;
    std::uint32_t channel_port = 0;  // requested_port, or the allocated port for -R ...:0:...
    int listen_fd = -1;  // address:port
    int fixed_fd = -1;   // 127.0.0.1:port, for a declared fixed port only
    std::uint64_t connects = 0;
};

// One relayed TCP connection <-> forwarded-tcpip channel.
struct Relay : Pollable {
    Relay() : Pollable(Kind::kRelay) {}
    Session* session = nullptr;
    std::uint64_t forward_id = 0;  // the forward that accepted it: it ends with that forward
    std::string target;
    int fd = -1;
    ssh_channel channel = nullptr;
    ssh_channel_callbacks_struct callbacks{};
    std::string peer_host;
    std::uint16_t peer_port = 0;
    bool opening = true;          // ssh_channel_open_reverse_forward returned SSH_AGAIN so far
    bool tcp_eof = false;         // read 0 from the TCP side
    bool eof_sent = false;        // channel EOF sent to the client
    bool chan_eof = false;        // client sent channel EOF
    bool tcp_shut = false;        // shutdown(SHUT_WR) done
    bool chan_closed = false;     // client closed the channel
    bool tcp_blocked = false;     // SSH->TCP data waits for EPOLLOUT
    bool window_blocked = false;  // TCP->SSH waits for the client's window
    bool finishing = false;       // queued for finish
    bool scraper_hup = false;     // EPOLLRDHUP seen: the scraper sent its FIN (unread data may remain)
    Clock::time_point accepted;                // when the scraper connected: bounds the channel open
    std::optional<Clock::time_point> scraper_gone;  // first EOF/FIN from the scraper: bounds the client's answer
    Clock::time_point client_active;           // last data or EOF from the client on this channel
    std::string to_tcp;           // channel data read but not yet accepted by the socket
    std::string to_ssh;           // socket data not yet accepted by the channel
    std::string open_address;     // forwarded-tcpip "address that was connected" = what the client asked
    std::uint32_t open_port = 0;
    std::string close_reason;
    std::uint32_t epoll_mask = 0;
    std::uint64_t bytes_up = 0, bytes_down = 0;  // up: exporter->client... named from the scraper's view
};

struct Session : Pollable {
    Session() : Pollable(Kind::kSession) {}
    std::uint64_t id = 0;
    Worker* worker = nullptr;
    ssh_session ssh = nullptr;
    ssh_event event = nullptr;  // this session's own poll context (only its socket): see the top of this file
    int watch_fd = -1;          // dup of the socket in the worker's epoll set: ready -> poll `event`
    std::uint32_t epoll_mask = 0;
    std::string client;  // "ADDR:PORT"
    std::string client_ip;
    Clock::time_point started;
    ssh_counter_struct socket_counter{};
    ssh_counter_struct packet_counter{};
    bool in_event = false;
    bool authenticated = false;
    std::string user;
    std::string fingerprint = "-";
    KeyGrant grant;
    unsigned auth_failures = 0;
    std::uint64_t last_in_packets = 0;
    unsigned missed_keepalives = 0;
    std::vector<std::unique_ptr<Forward>> forwards;
    std::vector<std::unique_ptr<Relay>> relays;
    std::vector<ssh_channel> shell_refusals;  // session channels whose shell/exec we answer with a message
    std::vector<ssh_channel> refusals_due;    // those whose shell/exec/subsystem request came: answer them now
    bool closing = false;
    std::string close_reason;
    std::uint64_t relay_bytes_up = 0, relay_bytes_down = 0;
    std::size_t live_forwards() const;
    // An unknown key that proved itself (publickey answered with partial success) and may enrol with a join
    // token over keyboard-interactive (session_messages.cpp).
    std::string enrol_fingerprint, enrol_blob, enrol_type;
    bool enrol_prompted = false;  // the token prompt was sent: the next keyboard-interactive message answers it
};

struct Mail {
    enum class Type { kNewSession, kCancelForward, kStop };
    explicit Mail(Type t) : type(t) {}
    Type type;
    ssh_session ssh = nullptr;
    int fd = -1;
    std::string client, client_ip;
    std::uint64_t session_id = 0, forward_id = 0;
    std::string reason;
};

class Worker {
public:
    Worker(ServerContext& ctx, int index);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void start();
    void join();
    void post(Mail mail);  // any thread
    std::size_t session_count() const { return session_count_.load(); }

    // libssh callbacks (session_messages.cpp, relay.cpp) — all noexcept.
    static int on_message(ssh_session, ssh_message msg, void* userdata) noexcept;
    static int on_channel_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                               void* userdata) noexcept;
    static void on_channel_eof(ssh_session, ssh_channel, void* userdata) noexcept;
    static void on_channel_close(ssh_session, ssh_channel, void* userdata) noexcept;

private:
    // worker.cpp
    void run() noexcept;
    void loop_once();
    void handle_mail();
    void adopt_session(Mail& mail);
    void on_timer();
    void poll_session(Session& s, std::uint32_t ev);
    void update_session_interest(Session& s);
    void check_session(Session& s);
    void close_session(Session& s, const std::string& reason);
    void teardown_session(Session& s);
    void collect_garbage();
    void stop_all();

    // session_messages.cpp
    int handle_message(Session& s, ssh_message msg);
    int handle_auth(Session& s, ssh_message msg);
    int handle_token_auth(Session& s, ssh_message msg);
    void accept_auth(Session& s, ssh_message msg, const std::string& type, KeyVerdict verdict);
    int handle_channel_open(Session& s, ssh_message msg);
    int handle_channel_request(Session& s, ssh_message msg);
    void answer_shell_refusals(Session& s);

    // forwards.cpp
    int handle_tcpip_forward(Session& s, ssh_message msg);
    int refuse_forward(Session& s, const ForwardRequest& request, const std::string& reason, const std::string& why);
    ForwardDecision decide(Session& s, const ForwardRequest& request, std::map<std::uint16_t, std::string>& fixed_ports);
    void announce_forward(Session& s, const ForwardRequest& request, const ForwardDecision& decision,
                          const Forward& forward, const std::optional<TunnelOwner>& previous);
    int handle_cancel_forward(Session& s, ssh_message msg);
    void remove_forward(Forward& f, const std::string& why);
    bool watch_listener(Forward& f, int fd, std::string& failure);
    void close_listeners(Forward& f);
    void accept_connections(Forward& f);
    void accept_on(Forward& f, int listen_fd);
    void set_listener_interest(Forward& f, std::uint32_t events);
    void resume_listeners();

    // relay.cpp
    void start_relay(Forward& f, int fd, const std::string& peer_host, std::uint16_t peer_port);
    void progress_opening();
    void recheck_windows();
    void relay_readable(Relay& r);
    void relay_writable(Relay& r);
    void relay_update_interest(Relay& r);
    void relay_maybe_finish(Relay& r);
    void relay_close(Relay& r, const std::string& why);
    void relay_release(Relay& r);
    void queue_relay(Relay& r);
    void relay_scraper_hup(Relay& r);
    void expire_relays(Clock::time_point now);

    ServerContext& ctx_;
    int index_;
    std::thread thread_;
    int epoll_fd_ = -1;
    int mail_fd_ = -1;
    Pollable mailbox_{Pollable::Kind::kMailbox};
    std::mutex mail_mu_;
    std::deque<Mail> mail_;
    std::atomic<std::size_t> session_count_{0};
    bool stopping_ = false;

    std::map<std::uint64_t, std::unique_ptr<Session>> sessions_;
    std::vector<Relay*> opening_;                  // relays whose channel open is pending
    std::vector<Relay*> window_blocked_;           // relays waiting for the client's window
    std::vector<Relay*> relay_work_;               // relays touched by callbacks: re-evaluate after the round
    std::vector<Session*> suspects_;               // sessions whose socket reported hang-up
    std::vector<std::uint64_t> paused_listeners_;  // forwards whose accept ran out of descriptors
    std::vector<char> scratch_;
    Clock::time_point next_timer_;
    Clock::time_point next_keepalive_;
    bool garbage_ = false;
};

// Process-wide ids for sessions and forwards.
std::uint64_t next_object_id();

}  // namespace tunneld
