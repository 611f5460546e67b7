// io/safetensors_dtype.cpp: binary16 and bfloat16 <-> float32 (see safetensors_dtype.hpp).
#include "io/safetensors_dtype.hpp"

#include <cstring>

namespace opd::io::safetensors {

namespace {
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return float_of(sign | 0x7f800000u | (mant << 13));  // inf, NaN (payload kept)
  if (exp != 0) return float_of(sign | ((exp + 112u) << 23) | (mant << 13));  // 127 - 15 = 112
  if (mant == 0) return float_of(sign);                                         // +-0
  // Subnormal binary16 (mant * 2^-24) is a normal float32: shift the leading 1 into place.
  uint32_t e = 113;  // the exponent field of 2^-14, lowered once per shift
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return float_of(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = bits_of(f);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t exp = (u >> 23) & 0xffu;
  const uint32_t mant = u & 0x7fffffu;
  if (exp == 0xff) {
    if (mant == 0) return sign | 0x7c00u;  // inf
    // NaN: keep the payload's top 10 bits; should they all be zero, set the quiet bit so that
    // it stays a NaN rather than becoming infinity.
    uint16_t m = static_cast<uint16_t>(mant >> 13);
    return sign | 0x7c00u | (m != 0 ? m : 0x200u);
  }
  const int e = static_cast<int>(exp) - 127 + 15;  // binary16 exponent field
  if (e >= 31) return sign | 0x7c00u;              // >= 2^16: beyond every rounding, infinity
  if (e >= 1) {
    // Normal: keep 10 mantissa bits; a carry out of the mantissa correctly bumps the exponent
    // (up to infinity from 65520 on).
    uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  // Subnormal or zero in binary16: the value in units of 2^-24 is m * 2^-(126 - exp) with the
  // implicit bit made explicit (float32 subnormals are far below 2^-25 and round to zero).
  if (exp == 0) return sign;
  const uint32_t m = mant | 0x800000u;
  const uint32_t shift = 126u - exp;  // >= 14, since exp <= 112 here
  if (shift > 24) return sign;        // below half the smallest subnormal
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;  // may carry into the smallest normal
  return sign | static_cast<uint16_t>(h);
}

float bf16_to_f32(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu) != 0) {
    const auto hi = static_cast<uint16_t>(u >> 16);
    return (hi & 0x7fu) != 0 ? hi : static_cast<uint16_t>(hi | 0x40u);  // stays a NaN
  }
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even; overflow -> infinity
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace opd::io::safetensors
