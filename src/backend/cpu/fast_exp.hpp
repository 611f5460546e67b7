// A branch-free float exp that the compiler vectorises inside loops (libm's expf is a call per
// element and any float comparison blocks if-conversion): Cephes' range reduction and degree-6
// polynomial, within ~2 ulp on [-87, 88].
#pragma once

#include <bit>
#include <cstdint>

namespace opd::backend::cpu {

// exp(x). Underflow gives 0 (x below about -87.7, down to -inf), overflow +inf (x above about
// 88.4); the bounds are applied to the integer exponent, so no float comparison is needed. A NaN
// argument gives an unspecified value (callers propagate their own NaN).
inline float fast_exp(float x) {
  // x = n ln2 + r, |r| <= ln2 / 2. Adding 1.5 * 2^23 rounds x log2(e) to the integer n and, while
  // |n| < 2^22 (t in [2^23, 2^24)), leaves n in the low mantissa bits; beyond that x is far past
  // both bounds and only its sign matters.
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  const uint32_t tb = std::bit_cast<uint32_t>(t);
  const int32_t huge = 1000 - 2000 * static_cast<int32_t>(std::bit_cast<uint32_t>(x) >> 31);
  const int32_t exact = -static_cast<int32_t>((tb & 0xFF800000u) == 0x4B000000u);  // all ones
  int32_t ni = ((static_cast<int32_t>(tb & 0x7FFFFFu) - 0x400000) & exact) | (huge & ~exact);
  float r = x - n * 0.693359375f;  // ln2 in two parts: the first times n is exact
  r = r - n * -2.12194440e-4f;
  // Outside the range r is meaningless (and could overflow the polynomial): use r = 0 there.
  const int32_t in_range = (ni >= -127 && ni <= 128) ? -1 : 0;
  r = std::bit_cast<float>(std::bit_cast<int32_t>(r) & in_range);
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n through the exponent bits: n <= -127 gives the bits of 0, n >= 128 those of infinity.
  ni = ni < -127 ? -127 : ni;
  ni = ni > 128 ? 128 : ni;
  return p * std::bit_cast<float>((ni + 127) << 23);
}

}  // namespace opd::backend::cpu
