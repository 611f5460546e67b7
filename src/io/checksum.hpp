// io/checksum.hpp: the 64-bit FNV-1a checksum that every checkpoint dataset carries, so that a
// flipped bit in stored data is caught on load instead of silently trained on.
#pragma once

#include <cstddef>
#include <cstdint>

namespace opd::io {

inline constexpr uint64_t kFnv1a64Offset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnv1a64Prime = 0x100000001b3ULL;

// FNV-1a over `n` bytes. Pass a previous result as `h` to continue a running checksum over
// several pieces (the result equals the checksum of their concatenation).
inline uint64_t fnv1a64(const void* data, std::size_t n, uint64_t h = kFnv1a64Offset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnv1a64Prime;
  }
  return h;
}

}  // namespace opd::io
