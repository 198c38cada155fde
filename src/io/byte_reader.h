// A cursor over untrusted bytes: every read is bounds-checked and a failure raises FormatError
// naming the origin, the offset and what was being read.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "ecomla/error.h"

namespace ecomla::io {

class ByteReader {
public:
  ByteReader(std::span<const uint8_t> bytes, std::string origin)
      : bytes_(bytes), origin_(std::move(origin)) {}

  uint64_t offset() const { return offset_; }
  uint64_t size() const { return bytes_.size(); }
  uint64_t remaining() const { return bytes_.size() - offset_; }
  const std::string& origin() const { return origin_; }

  template <typename T>
  requires std::is_trivially_copyable_v<T> T read(const char* what) {
    require(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  std::span<const uint8_t> read_bytes(uint64_t n, const char* what) {
    require(n, what);
    auto out = bytes_.subspan(offset_, n);
    offset_ += n;
    return out;
  }

  void seek(uint64_t offset, const char* what) {
    if (offset > bytes_.size()) fail(std::string(what) + ": offset past end of data");
    offset_ = offset;
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw FormatError(origin_ + ": at byte " + std::to_string(offset_) + ": " + message);
  }

private:
  void require(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(std::string("truncated while reading ") + what + " (need " + std::to_string(n) +
           " bytes, " + std::to_string(remaining()) + " left)");
    }
  }

  std::span<const uint8_t> bytes_;
  std::string origin_;
  uint64_t offset_ = 0;
};

}  // namespace ecomla::io
