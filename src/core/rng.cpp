// Philox4x32-10 and RngStream: see rng.hpp.
#include "core/rng.hpp"

#include <cmath>

#include "core/error.hpp"

namespace opd::core {

namespace {
// Constants from Salmon et al. 2011 / Random123 philox.h.
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments (golden ratio, sqrt 3)

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t{a} * uint64_t{b};
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}
}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {  // the key is bumped before every round but the first
      k[0] += kW0;
      k[1] += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

RngStream::RngStream(uint64_t seed, uint32_t purpose, uint64_t id)
    : seed_(seed), purpose_(purpose), id_(id) {
  // Out-of-range values would alias another stream's counters: a bug in the caller.
  OPD_CHECK(purpose <= kMaxPurpose, "RNG purpose ", purpose, " exceeds ", kMaxPurpose);
  OPD_CHECK(id <= kMaxId, "RNG stream id ", id, " exceeds 2^56-1");
}

std::array<uint32_t, 2> RngStream::key() const {
  return {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)};
}

std::array<uint32_t, 4> RngStream::make_counter(uint32_t purpose, uint64_t id, uint64_t block) {
  return {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
          static_cast<uint32_t>(id),
          (purpose << 24) | static_cast<uint32_t>((id >> 32) & 0x00FFFFFFu)};
}

uint32_t RngStream::next_u32() {
  const uint64_t block = position_ >> 2;
  if (block != cached_block_) {
    cached_ = philox4x32_10(make_counter(purpose_, id_, block), key());
    cached_block_ = block;
  }
  const uint32_t word = cached_[position_ & 3u];
  ++position_;
  return word;
}

uint64_t RngStream::next_u64() {
  const uint64_t hi = next_u32();
  return (hi << 32) | next_u32();
}

uint32_t RngStream::below(uint32_t n) {
  OPD_CHECK(n > 0, "RngStream::below(0)");
  // Lemire 2019: the high word of x*n is uniform on [0, n) once the low words below
  // 2^32 mod n are rejected.
  uint64_t m = uint64_t{next_u32()} * n;
  uint32_t low = static_cast<uint32_t>(m);
  if (low < n) {
    const uint32_t threshold = static_cast<uint32_t>(-n) % n;
    while (low < threshold) {
      m = uint64_t{next_u32()} * n;
      low = static_cast<uint32_t>(m);
    }
  }
  return static_cast<uint32_t>(m >> 32);
}

float RngStream::uniform() {
  return static_cast<float>(next_u32() >> 8) * 0x1.0p-24f;
}

double RngStream::uniform_double() {
  const uint64_t a = next_u32() >> 5;  // 27 bits
  const uint64_t b = next_u32() >> 6;  // 26 bits
  return static_cast<double>((a << 26) | b) * 0x1.0p-53;
}

std::array<float, 2> RngStream::normal_pair() {
  // u1 in (0, 1] so that log(u1) is finite; u2 in [0, 1).
  const double u1 = (static_cast<double>(next_u32() >> 8) + 1.0) * 0x1.0p-24;
  const double u2 = static_cast<double>(next_u32() >> 8) * 0x1.0p-24;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 6.283185307179586476925 * u2;
  return {static_cast<float>(r * std::cos(theta)), static_cast<float>(r * std::sin(theta))};
}

float RngStream::normal() { return normal_pair()[0]; }

}  // namespace opd::core
