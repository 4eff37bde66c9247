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

#include <atomic>
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

#include "forward/forward.hpp"
#include "policy/forward_policy.hpp"
#include "relay/relay.hpp"
#include "server_context.hpp"
#include "session/session.hpp"
#include "session/ssh_connection.hpp"

namespace tunneld {

// Timers (login grace, relay deadlines, keepalives, paused listeners) are looked at this often.
inline constexpr std::chrono::milliseconds kWorkerTimerPeriod{200};

// A message to a worker from another thread (the acceptor, another worker, main).
struct Mail {
    enum class Type { kNewSession, kCancelForward, kStop };
    explicit Mail(Type t) : type(t) {}
    Type type;
    SshConnection conn;  // kNewSession: the accepted connection, freed with the mail if nobody adopts it
    std::string client, client_ip;
    std::uint64_t session_id = 0, forward_id = 0;
    std::string reason;
    std::string detail;  // kCancelForward: more key=value fields for the `forward removed` line (" node=B")
};

// Per-worker buffer for socket and channel reads.
inline constexpr std::size_t kScratchBytes = 256 * 1024;

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

    // libssh callbacks (session/session_messages.cpp, relay/relay.cpp) — all noexcept.
    static int on_message(ssh_session, ssh_message msg, void* userdata) noexcept;
    static int on_channel_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                               void* userdata) noexcept;
    static void on_channel_eof(ssh_session, ssh_channel, void* userdata) noexcept;
    static void on_channel_close(ssh_session, ssh_channel, void* userdata) noexcept;

private:
    // session/worker.cpp
    void run() noexcept;
    void loop_once();
    void relay_event(Relay& r, std::uint32_t ev);
    void process_relay_work();
    void handle_mail();
    void cancel_forward(const Mail& mail);
    void adopt_session(Mail& mail);
    bool start_key_exchange(Session& s);
    void tune_session_socket(const Session& s);
    void on_timer();
    void poll_session(Session& s, std::uint32_t ev);
    void update_session_interest(Session& s);
    void touch(Session& s);
    void check_session(Session& s);
    void close_session(Session& s, const std::string& reason);
    void keepalive(Session& s);
    void teardown_session(Session& s);
    void collect_garbage();

    // session/session_messages.cpp
    int handle_message(Session& s, ssh_message msg);
    int handle_auth(Session& s, ssh_message msg);
    int refuse_auth(Session& s, const std::string& reason, const std::string& why, const std::string& fp);
    void offer_enrolment(Session& s, ssh_message msg, const std::string& fp, const std::string& blob,
                         const std::string& type);
    int handle_token_auth(Session& s, ssh_message msg);
    void accept_auth(Session& s, ssh_message msg, const std::string& type, KeyVerdict verdict);
    int handle_channel_open(Session& s, ssh_message msg);
    int handle_channel_request(Session& s, ssh_message msg);
    void answer_shell_refusals(Session& s);

    // forward/forwards.cpp
    int handle_tcpip_forward(Session& s, ssh_message msg);
    int refuse_forward(Session& s, const ForwardRequest& request, const std::string& reason, const std::string& why);
    ForwardDecision decide(Session& s, const ForwardRequest& request, std::map<std::uint16_t, std::string>& fixed_ports);
    void announce_forward(Session& s, const ForwardRequest& request, const ForwardDecision& decision,
                          const Forward& forward, const std::optional<TunnelOwner>& previous);
    int handle_cancel_forward(Session& s, ssh_message msg);
    void remove_forward(Forward& f, const std::string& why, const std::string& detail = {});
    bool watch_listener(Forward& f, int fd, std::string& failure);
    void close_listeners(Forward& f);
    void accept_connections(Forward& f);
    void accept_on(Forward& f, int listen_fd);
    void pause_accepting(Forward& f, int err);
    void set_listener_interest(Forward& f, std::uint32_t events);
    void resume_listeners();

    // relay/relay.cpp
    bool relay_admitted(Forward& f, int fd, const std::string& peer_host, std::uint16_t peer_port);
    void start_relay(Forward& f, int fd, const std::string& peer_host, std::uint16_t peer_port);
    void open_channel(Relay& r);
    void channel_opened(Relay& r);
    void progress_opening();
    void recheck_windows();
    void wait_for_window(Relay& r);
    void relay_scraper_eof(Relay& r);
    void relay_readable(Relay& r);
    void relay_writable(Relay& r);
    void relay_update_interest(Relay& r);
    void relay_maybe_finish(Relay& r);
    void relay_close(Relay& r, RelayEnd end, std::string detail);
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
    // Work lists, so a round looks only at relays that need it; dead ones are dropped in collect_garbage.
    // opening_ holds exactly the live relays whose phase is opening after their first open call (open_channel
    // adds, progress_opening takes all and checks the phase); window_blocked_ exactly those with window_closed
    // (wait_for_window adds, recheck_windows removes); relay_work_ exactly those with queued (queue_relay adds,
    // process_relay_work and collect_garbage remove).
    std::vector<Relay*> opening_;         // ask again whether the client accepted
    std::vector<Relay*> window_blocked_;  // write again once the window opens
    std::vector<Relay*> relay_work_;      // touched by callbacks or I/O: re-evaluate
    std::vector<Session*> suspects_;               // sessions whose socket reported hang-up
    std::vector<Session*> touched_;                // sessions that polled or queued output this round
    std::vector<std::uint64_t> paused_listeners_;  // forwards whose accept ran out of descriptors
    std::vector<char> scratch_;
    Clock::time_point next_timer_;
    Clock::time_point next_keepalive_;
    bool garbage_ = false;
};

// Process-wide ids for sessions and forwards.
std::uint64_t next_object_id();

}  // namespace tunneld
