// bf16 conversion (core/bf16.hpp): round to nearest with ties to even, exact widening, NaN and
// infinity, and the bound on the relative rounding error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/bf16.hpp"

using opd::core::bf16_to_float;
using opd::core::float_to_bf16;

namespace {
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace

TEST(Bf16, RoundsToNearestWithTiesToEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  // 1 + 2^-8 lies halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): ties go to even.
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  // 1 + 3 2^-8 lies halfway between 0x3F81 and 0x3F82 (even): up.
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  // Just above and below a halfway point round to the nearer neighbour.
  EXPECT_EQ(float_to_bf16(from_bits(0x3F808001u)), 0x3F81);
  EXPECT_EQ(float_to_bf16(from_bits(0x3F817FFFu)), 0x3F81);
  // A carry out of the mantissa moves the exponent: 2 - 2^-9 rounds up to 2.
  EXPECT_EQ(float_to_bf16(2.0f - std::ldexp(1.0f, -9)), 0x4000);
}

TEST(Bf16, InfinityNanAndOverflow) {
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // The largest float is beyond bf16's largest finite value plus half an ulp: infinity.
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  // A NaN whose payload sits in the dropped bits must stay a NaN, not become infinity.
  const uint16_t n = float_to_bf16(from_bits(0x7F800001u));
  EXPECT_TRUE(std::isnan(bf16_to_float(n)));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(-std::nanf("")))));
}

TEST(Bf16, EveryValueRoundTripsAndWideningIsExact) {
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = bf16_to_float(static_cast<uint16_t>(b));
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    ASSERT_EQ(u, b << 16);
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), b) << std::hex << b;
  }
}

TEST(Bf16, RelativeErrorIsAtMostHalfAnUlp) {
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 100.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = normal(gen);
    const float r = bf16_to_float(float_to_bf16(x));
    ASSERT_LE(std::abs(r - x), std::ldexp(std::abs(x), -8)) << x;  // 8 significant bits
  }
}
