// Everything a client asks for, answered from libssh's message callback: authentication, channel opens,
// channel requests, global requests. Only publickey authentication and tcpip-forward / cancel-tcpip-forward are
// granted, plus keyboard-interactive for a join token (an unknown key enrolling, see handle_token_auth); every
// refusal is logged with the client address and key fingerprint.
#include <cstring>

#include "policy/enrolment.hpp"
#include "session/key_identity.hpp"
#include "log.hpp"
#include "session/worker.hpp"

namespace tunneld {

using Counter = monitoring_proxy::registry::TunneldCounter;

namespace {

constexpr unsigned kMaxAuthFailures = 6;

// Printed by the OpenSSH client when someone runs a command or a shell instead of `ssh -N`.
constexpr const char* kSessionRefusal =
    "tunneld: this server only accepts reverse port forwards; no shell, command or subsystem.\r\n"
    "tunneld: connect with: ssh -N -R TARGET:80:localhost:9100 USER@HOST\r\n";

const char* channel_type_name(int subtype) {
    switch (subtype) {
        case SSH_CHANNEL_SESSION:
            return "session";
        case SSH_CHANNEL_DIRECT_TCPIP:
            return "direct-tcpip";
        case SSH_CHANNEL_FORWARDED_TCPIP:
            return "forwarded-tcpip";
        case SSH_CHANNEL_X11:
            return "x11";
        case SSH_CHANNEL_AUTH_AGENT:
            return "auth-agent";
        default:
            return "unknown(direct-streamlocal?)";
    }
}

const char* auth_method_name(int subtype) {
    switch (subtype) {
        case SSH_AUTH_METHOD_NONE:
            return "none";
        case SSH_AUTH_METHOD_PASSWORD:
            return "password";
        case SSH_AUTH_METHOD_PUBLICKEY:
            return "publickey";
        case SSH_AUTH_METHOD_HOSTBASED:
            return "hostbased";
        case SSH_AUTH_METHOD_INTERACTIVE:
            return "keyboard-interactive";
        case SSH_AUTH_METHOD_GSSAPI_MIC:
            return "gssapi";
        default:
            return "unknown";
    }
}

}  // namespace

int Worker::on_message(ssh_session, ssh_message msg, void* userdata) noexcept {
    auto* s = static_cast<Session*>(userdata);
    try {
        if (s->closing) return 1;
        return s->worker->handle_message(*s, msg);
    } catch (const std::exception& e) {
        log_line("error client=" + s->client + " fingerprint=" + s->fingerprint +
                 " while handling a message: " + e.what());
    } catch (...) {
        log_line("error client=" + s->client + " unknown exception while handling a message");
    }
    return 1;  // libssh sends the default (refusing) reply
}

int Worker::handle_message(Session& s, ssh_message msg) {
    switch (ssh_message_type(msg)) {
        case SSH_REQUEST_SERVICE: {
            const char* service = ssh_message_service_service(msg);
            if (service && std::string_view(service) == "ssh-userauth") {
                ssh_message_service_reply_success(msg);
                return 0;
            }
            return 1;
        }
        case SSH_REQUEST_AUTH:
            return handle_auth(s, msg);
        case SSH_REQUEST_CHANNEL_OPEN:
            return handle_channel_open(s, msg);
        case SSH_REQUEST_CHANNEL:
            return handle_channel_request(s, msg);
        case SSH_REQUEST_GLOBAL:
            if (!s.authenticated) return 1;
            switch (ssh_message_subtype(msg)) {
                case SSH_GLOBAL_REQUEST_TCPIP_FORWARD:
                    return handle_tcpip_forward(s, msg);
                case SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD:
                    return handle_cancel_forward(s, msg);
                case SSH_GLOBAL_REQUEST_KEEPALIVE:
                    return 1;  // answered with failure like OpenSSH's sshd does: any answer proves liveness
                default:
                    // Requests libssh parses but tunneld does not serve. Requests libssh does not know at all
                    // (streamlocal-forward@openssh.com for -R /path:...) are refused by libssh itself before any
                    // callback, so they are not logged here.
                    ctx_.counters.add(Counter::kGlobalRequestsRefused);
                    log_line("global request refused client=" + s.client + " fingerprint=" + s.fingerprint +
                             " reason=\"unsupported request (only tcpip-forward and cancel-tcpip-forward; "
                             "streamlocal forwards are refused)\"");
                    return 1;
            }
        default:
            return 1;
    }
}

int Worker::refuse_auth(Session& s, const std::string& reason, const std::string& why, const std::string& fp) {
    ctx_.counters.add(Counter::kAuthFailures, reason);
    log_line("auth refused client=" + s.client + " user=" + log_quote(s.user) + " fingerprint=" + fp +
             " reason=" + reason + " detail=" + log_quote(why));
    if (++s.auth_failures >= kMaxAuthFailures) close_session(s, "too many authentication failures");
    return 1;
}

// An unknown key that signed: partial success, and keyboard-interactive for its join token from now on.
void Worker::offer_enrolment(Session& s, ssh_message msg, const std::string& fp, const std::string& blob,
                             const std::string& type) {
    s.enrol_fingerprint = fp;
    s.enrol_blob = blob;
    s.enrol_type = type;
    s.enrol_prompted = false;
    ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_INTERACTIVE);
    ssh_message_auth_reply_success(msg, 1);  // SSH_MSG_USERAUTH_FAILURE, partial success: now the token
    log_line("auth partial client=" + s.client + " user=" + log_quote(s.user) + " fingerprint=" + fp +
             " type=" + type + " reason=\"unknown key, asking for a join token\"");
}

int Worker::handle_auth(Session& s, ssh_message msg) {
    // keyboard-interactive is offered only to a key that proved itself and may enrol with a join token.
    ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_PUBLICKEY |
                                          (s.enrol_fingerprint.empty() ? 0 : SSH_AUTH_METHOD_INTERACTIVE));
    if (s.authenticated) return 1;
    // A keyboard-interactive answer (SSH_MSG_USERAUTH_INFO_RESPONSE) carries no login name: keep the one we have.
    if (const char* user_c = ssh_message_auth_user(msg)) s.user = user_c;
    int method = ssh_message_subtype(msg);
    auto refuse = [&](const std::string& reason, const std::string& why, const std::string& fp) {
        return refuse_auth(s, reason, why, fp);
    };
    if (method == SSH_AUTH_METHOD_INTERACTIVE && !s.enrol_fingerprint.empty()) return handle_token_auth(s, msg);
    if (method != SSH_AUTH_METHOD_PUBLICKEY) {
        // "none" is how every client asks which methods exist: answer it quietly.
        if (method == SSH_AUTH_METHOD_NONE) return 1;
        return refuse("method", std::string(auth_method_name(method)) + " authentication is disabled, use a key", "-");
    }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // libssh 0.10's message API has no non-deprecated way to get the offered key or tell a probe from a signed
    // request (the replacement is the server-callback API, which cannot coexist with our message handling).
    ssh_key key = ssh_message_auth_pubkey(msg);
    auto state = ssh_message_auth_publickey_state(msg);
#pragma GCC diagnostic pop
    std::string fp = sha256_fingerprint(key);
    std::string blob = key_blob_base64(key);
    std::string type = key_type_name(key);
    if (fp.empty() || blob.empty()) return refuse("bad_key", "cannot read the offered key", "-");
    if (!supported_key_type(type)) return refuse("key_type", "key type " + type + " is not accepted", fp);

    KeyVerdict verdict = ctx_.evaluate_key(s.user, blob, fp, s.client_ip);
    // An unknown key may still enrol while some invitation is open: it proves possession first (a signed
    // publickey request), then gets partial success and the token prompt.
    bool may_enrol = false;
    if (!verdict.accepted && verdict.reason == "unknown_key") {
        try {
            may_enrol = ctx_.registry.with(
                [&](auto& reg) { return invitations_open(reg, unix_now_ms() / 1000); });
        } catch (const std::exception& e) {
            log_line(std::string("registry error while looking for invitations: ") + e.what());
        }
    }
    if (!verdict.accepted && !may_enrol) return refuse(verdict.reason, verdict.message, fp);

    if (state == SSH_PUBLICKEY_STATE_NONE) {
        ssh_message_auth_reply_pk_ok_simple(msg);  // "this key would do": the client signs next
        return 0;
    }
    if (state != SSH_PUBLICKEY_STATE_VALID) return refuse("bad_signature", "signature does not verify", fp);

    if (may_enrol)
        offer_enrolment(s, msg, fp, blob, type);
    else
        accept_auth(s, msg, type, std::move(verdict));
    return 0;
}

int Worker::handle_token_auth(Session& s, ssh_message msg) {
    auto refuse = [&](const char* reason, const std::string& target) {
        ctx_.counters.add(Counter::kEnrolmentsRefused, reason);
        log_line("enrolment refused client=" + s.client + " fingerprint=" + s.enrol_fingerprint +
                 " target=" + (target.empty() ? "-" : target) + " reason=" + reason);
        s.enrol_prompted = false;
        if (++s.auth_failures >= kMaxAuthFailures) close_session(s, "too many authentication failures");
        return 1;
    };
    if (!s.enrol_prompted || ssh_message_auth_kbdint_is_response(msg) != 1) {
        // The client asks for keyboard-interactive: spend one of this address's attempts, then ask for the token.
        bool allowed = false;
        {
            std::lock_guard lock(ctx_.enrol_mu);
            allowed = ctx_.enrol_attempts.take(s.client_ip, AttemptLimiter::Clock::now());
        }
        if (!allowed) return refuse("rate_limited", "");
        static const char* prompts[] = {"monitoring-proxy join token: "};
        static char echo[] = {0};
        if (ssh_message_auth_interactive_request(msg, "monitoring-proxy enrolment", "", 1, prompts, echo) != SSH_OK)
            return 1;
        s.enrol_prompted = true;
        return 0;
    }
    s.enrol_prompted = false;
    if (ssh_userauth_kbdint_getnanswers(s.ssh()) != 1) return refuse("malformed", "");
    const char* answer = ssh_userauth_kbdint_getanswer(s.ssh(), 0);
    const std::string fp = s.enrol_fingerprint;
    Enrolment outcome = ctx_.registry.with_declared(
        [&](auto& reg) { return consume_invite(reg, answer ? answer : "", fp, unix_now_ms() / 1000); });
    if (outcome.result != EnrolResult::kEnrolled) return refuse(enrol_reason(outcome.result), outcome.target);

    ctx_.counters.add(Counter::kEnrolments);
    log_line("enrolment accepted client=" + s.client + " fingerprint=" + fp + " target=" + outcome.target +
             " uses_left=" + std::to_string(outcome.uses_left));
    KeyVerdict verdict = ctx_.evaluate_key(s.user, s.enrol_blob, fp, s.client_ip);
    if (!verdict.accepted) {
        // Only if the binding vanished at once (tunnelctl key rm): the client is told no, like any failure.
        log_line("auth refused client=" + s.client + " fingerprint=" + fp + " reason=" + verdict.reason +
                 " detail=\"key unbound right after enrolment\"");
        return 1;
    }
    accept_auth(s, msg, s.enrol_type, std::move(verdict));
    return 0;
}

void Worker::accept_auth(Session& s, ssh_message msg, const std::string& type, KeyVerdict verdict) {
    ssh_message_auth_reply_success(msg, 0);
    s.authenticated = true;
    s.fingerprint = verdict.grant.fingerprint;
    s.grant = std::move(verdict.grant);
    s.last_in_packets = s.packet_counter.in_packets;
    ctx_.admission.release(s.client_ip);
    ctx_.counters.add(Counter::kAuthAccepted);
    std::string targets;
    for (const auto& t : s.grant.bound_targets) targets += (targets.empty() ? "" : ",") + t;
    log_line("auth accepted client=" + s.client + " user=" + log_quote(s.user) + " fingerprint=" + s.fingerprint +
             " type=" + type + " source=" + verdict.source + " bound_targets=" + (targets.empty() ? "-" : targets));
}

int Worker::handle_channel_open(Session& s, ssh_message msg) {
    int subtype = ssh_message_subtype(msg);
    if (!s.authenticated) return 1;
    if (subtype == SSH_CHANNEL_SESSION) {
        // Accepted only to be able to say why: the first shell/exec/subsystem request gets a message on stderr
        // and exit status 1, which the OpenSSH client prints. `ssh -N` never opens one.
        ssh_channel ch = ssh_message_channel_request_open_reply_accept(msg);
        if (ch) s.shell_refusals.push_back(ch);
        return 0;
    }
    const char* type = channel_type_name(subtype);
    std::string reason = subtype == SSH_CHANNEL_DIRECT_TCPIP ? "direct-tcpip (ssh -L / -D) is never allowed"
                                                             : std::string(type) + " channels are not allowed";
    ctx_.counters.add(Counter::kChannelsRefused, type);
    log_line("channel refused client=" + s.client + " fingerprint=" + s.fingerprint + " type=" + type +
             " reason=" + log_quote(reason));
    return 1;  // SSH_MSG_CHANNEL_OPEN_FAILURE, administratively prohibited
}

int Worker::handle_channel_request(Session& s, ssh_message msg) {
    int subtype = ssh_message_subtype(msg);
    ssh_channel ch = ssh_message_channel_request_channel(msg);
    bool is_ours = false;
    for (auto c : s.shell_refusals) is_ours = is_ours || c == ch;
    if (is_ours && (subtype == SSH_CHANNEL_REQUEST_SHELL || subtype == SSH_CHANNEL_REQUEST_EXEC ||
                    subtype == SSH_CHANNEL_REQUEST_SUBSYSTEM)) {
        const char* what = subtype == SSH_CHANNEL_REQUEST_SHELL  ? "shell"
                           : subtype == SSH_CHANNEL_REQUEST_EXEC ? "exec"
                                                                 : "subsystem";
        ssh_message_channel_request_reply_success(msg);
        ctx_.counters.add(Counter::kChannelsRefused, what);
        log_line("channel refused client=" + s.client + " fingerprint=" + s.fingerprint + " type=" + what +
                 " reason=\"sessions are not allowed, use ssh -N\"");
        // Answer after this round: writing and closing from inside the callback would poll re-entrantly. Only
        // this channel: answering one whose request has not come yet makes the client quit before it asks.
        s.refusals_due.push_back(ch);
        suspects_.push_back(&s);
        return 0;
    }
    // A pty on a session channel we refuse anyway is accepted (none is allocated): `ssh -tt` gives up on a refused
    // pty before it reads the "use ssh -N" message that the shell or exec request gets.
    if (is_ours && subtype == SSH_CHANNEL_REQUEST_PTY) {
        ssh_message_channel_request_reply_success(msg);
        return 0;
    }
    // env, x11, agent forwarding, signals, window changes: refused (failure if the client wants a reply).
    return 1;
}

void Worker::answer_shell_refusals(Session& s) {
    std::vector<ssh_channel> channels;
    channels.swap(s.refusals_due);
    for (ssh_channel ch : channels) {
        std::erase(s.shell_refusals, ch);
        if (!ssh_channel_is_open(ch)) continue;
        ssh_channel_write_stderr(ch, kSessionRefusal, static_cast<uint32_t>(std::strlen(kSessionRefusal)));
        ssh_channel_request_send_exit_status(ch, 1);
        ssh_channel_send_eof(ch);
        ssh_channel_close(ch);
    }
}

}  // namespace tunneld
