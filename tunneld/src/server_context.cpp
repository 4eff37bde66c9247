#include "server_context.hpp"

#include <chrono>
#include <fstream>
#include <sstream>

#include "policy/address_match.hpp"
#include "monitoring_proxy/codec.hpp"
#include "log.hpp"
#include "session/worker.hpp"

namespace tunneld {

void Counters::add(monitoring_proxy::registry::TunneldCounter counter, std::string_view label_value,
                   std::uint64_t delta) {
    const std::string key = monitoring_proxy::registry::encode_counter_key(counter, label_value);
    std::lock_guard lock(mu_);
    pending_[key] += delta;
}

void Counters::flush(RegistryGateway& registry) noexcept {
    std::map<std::string, std::uint64_t> batch;
    {
        std::lock_guard lock(mu_);
        batch.swap(pending_);
    }
    if (batch.empty()) return;
    try {
        registry.with([&](auto& reg) {
            reg.update_live([&](monitoring_proxy::registry::LiveTxn& txn) {
                for (const auto& [key, delta] : batch) txn.add_counter(key, delta);
            });
            return 0;
        });
    } catch (const std::exception& e) {
        log_line(std::string("registry error while writing counters: ") + e.what());
        std::lock_guard lock(mu_);
        for (const auto& [key, delta] : batch) pending_[key] += delta;  // retried next flush
    }
}

ServerContext::ServerContext(Options opts, monitoring_proxy::registry::Registry reg)
    : options(std::move(opts)),
      registry(std::move(reg)),
      admission(options.preauth),
      tunnels(options.port_range, random_loopback_start()) {
    instance_id = monitoring_proxy::registry::new_instance_id();
    authorized_keys_ = std::make_shared<AuthorizedKeys>();
}

ServerContext::~ServerContext() = default;

void ServerContext::load_authorized_keys() {
    if (options.authorized_keys.empty()) return;
    std::ifstream in(options.authorized_keys, std::ios::binary);
    if (!in) {
        // Keep the previous keys: a file briefly missing during an edit must not lock every host out.
        log_line("authorized_keys unreadable path=" + options.authorized_keys + " (keeping " +
                 std::to_string(authorized_keys()->keys.size()) + " keys)");
        return;
    }
    std::ostringstream text;
    text << in.rdbuf();
    auto parsed = std::make_shared<AuthorizedKeys>(parse_authorized_keys(text.str(), options.authorized_keys));
    for (const auto& err : parsed->errors) log_line("authorized_keys error " + err);
    log_line("authorized_keys loaded path=" + options.authorized_keys + " keys=" + std::to_string(parsed->keys.size()) +
             " skipped=" + std::to_string(parsed->errors.size()));
    std::lock_guard lock(keys_mu_);
    authorized_keys_ = std::move(parsed);
}

std::shared_ptr<const AuthorizedKeys> ServerContext::authorized_keys() const {
    std::lock_guard lock(keys_mu_);
    return authorized_keys_;
}

KeyVerdict ServerContext::evaluate_key(const std::string& user, const std::string& blob_base64,
                                       const std::string& fingerprint, const std::string& client_ip) {
    KeyVerdict v;
    if (!options.user.empty() && user != options.user) {
        v.reason = "user";
        v.message = "login name " + log_quote(user) + " is not accepted (--user " + options.user + ")";
        return v;
    }
    std::vector<std::string> bound;
    try {
        bound = registry.with([&](auto& reg) { return reg.targets_for_key(fingerprint); });
    } catch (const std::exception& e) {
        log_line(std::string("registry error while checking a key: ") + e.what());
    }
    auto keys = authorized_keys();
    const AuthorizedKey* entry = nullptr;
    bool listed = false;
    for (const auto& k : keys->keys) {
        if (k.blob_base64 != blob_base64) continue;
        listed = true;
        if (k.from.empty() || address_matches_patterns(k.from, client_ip)) {
            entry = &k;
            break;
        }
    }
    if (listed && entry == nullptr) {
        // The operator restricted this key to some addresses; that holds even if the registry binds it too.
        v.reason = "from_mismatch";
        v.message = "key is in authorized_keys but from= does not match " + client_ip;
        return v;
    }
    if (entry == nullptr && bound.empty()) {
        v.reason = "unknown_key";
        v.message = "key is neither bound to a target nor in authorized_keys";
        return v;
    }
    v.accepted = true;
    v.grant.fingerprint = fingerprint;
    v.grant.bound_targets = std::move(bound);
    if (entry != nullptr) {
        v.grant.from_authorized_keys = true;
        v.grant.permitlisten = entry->permitlisten;
        v.grant.forwarding_allowed = entry->forwarding_allowed;
        v.source = "authorized_keys:" + options.authorized_keys + ":" + std::to_string(entry->line);
    } else {
        v.source = "registry";
    }
    return v;
}

}  // namespace tunneld
