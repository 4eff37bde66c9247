// The in-process "exporter": turns HTTP requests arriving on one forwarded-tcpip channel into fixed HTTP/1.1
// responses. Pure byte logic (no libssh) so the session code only moves bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loadclient {

// A complete response ("HTTP/1.1 200 OK", Content-Length) whose body is Prometheus-like text of exactly
// body_bytes bytes.
std::string make_exporter_response(std::size_t body_bytes);

class HttpResponder {
public:
    explicit HttpResponder(const std::string& response) : response_(response) {}

    // Appends request bytes. Returns false when the peer sent something that is not a sane request head
    // (too long without a blank line); the channel should then be closed.
    bool feed(const char* data, std::size_t len);

    // The bytes to send next (empty when nothing is due), and how many of them were accepted by the channel.
    std::string_view pending() const;
    void advance(std::size_t n);

    // The client asked for the connection to end (HTTP/1.0 or "Connection: close") and every response is out.
    bool done() const { return close_requested_ && queued_ == 0; }

    std::uint64_t requests() const { return requests_; }

private:
    void parse_requests();

    const std::string& response_;
    std::string inbound_;
    std::size_t queued_ = 0;       // responses still (partly) unsent
    std::size_t offset_ = 0;       // bytes of the first queued response already sent
    bool close_requested_ = false;
    std::uint64_t requests_ = 0;
};

}  // namespace loadclient
