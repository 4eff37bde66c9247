// The registry's value encoding (registry_schema.hpp, "Value encoding"): a version byte, fixed-width little-endian
// integers, u16-length-prefixed strings. Shared by the registry codec and the cluster schema's etcd values.
#pragma once

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "monitoring_proxy/codec.hpp"

namespace monitoring_proxy::registry {

class Writer {
public:
    explicit Writer(std::uint8_t version) { out_.push_back(static_cast<char>(version)); }
    template <class T>
    void integer(T v) {
        auto u = static_cast<std::make_unsigned_t<T>>(v);
        for (std::size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
    }
    void count(std::size_t n, const char* what) {
        if (n > std::numeric_limits<std::uint16_t>::max())
            throw std::length_error(std::string(what) + " too long to store (" + std::to_string(n) + ")");
        integer<std::uint16_t>(static_cast<std::uint16_t>(n));
    }
    void string(std::string_view s) {
        count(s.size(), "string");
        out_.append(s);
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

// Bounds-checked reading over a value; every failure is a DecodeError naming the record and the field.
class FieldReader {
public:
    // Accepts record versions min_version..max_version; version() tells which one this value has.
    FieldReader(std::string_view in, const char* record, std::uint8_t min_version = kRecordVersion,
           std::uint8_t max_version = kRecordVersion)
        : in_(in), record_(record) {
        if (in_.empty()) fail("empty value");
        version_ = static_cast<std::uint8_t>(in_[0]);
        if (version_ < min_version || version_ > max_version)
            fail("unknown record version " + std::to_string(version_));
        pos_ = 1;
    }
    std::uint8_t version() const noexcept { return version_; }
    template <class T>
    T integer(const char* field) {
        need(sizeof(T), field);
        std::make_unsigned_t<T> u = 0;
        for (std::size_t i = 0; i < sizeof(T); ++i)
            u |= static_cast<std::make_unsigned_t<T>>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
        pos_ += sizeof(T);
        return static_cast<T>(u);
    }
    std::string_view string(const char* field) {
        std::size_t n = integer<std::uint16_t>(field);
        need(n, field);
        std::string_view s = in_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    void end() {
        if (pos_ != in_.size()) fail(std::to_string(in_.size() - pos_) + " trailing bytes");
    }
    [[noreturn]] void fail(const std::string& why) { throw DecodeError(std::string(record_) + " record: " + why); }

private:
    void need(std::size_t n, const char* field) {
        if (in_.size() - pos_ < n) fail(std::string("truncated at ") + field);
    }
    std::string_view in_;
    std::size_t pos_ = 0;
    const char* record_;
    std::uint8_t version_ = 0;
};

}  // namespace monitoring_proxy::registry
