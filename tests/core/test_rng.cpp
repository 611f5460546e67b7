// core::philox4x32_10 against Random123's known-answer vectors; RngStream layout, independence,
// checkpoint restore and the moments of its uniform and normal draws.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"

using opd::core::philox4x32_10;
using opd::core::RngPurpose;
using opd::core::RngStream;
using U4 = std::array<uint32_t, 4>;
using U2 = std::array<uint32_t, 2>;

// Random123 examples/kat_vectors, the three "philox4x32 10" lines: counter, key -> output.
TEST(Philox, KnownAnswerZeros) {
  EXPECT_EQ(philox4x32_10(U4{0, 0, 0, 0}, U2{0, 0}),
            (U4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
}

TEST(Philox, KnownAnswerOnes) {
  EXPECT_EQ(philox4x32_10(U4{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          U2{0xffffffffu, 0xffffffffu}),
            (U4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

TEST(Philox, KnownAnswerPi) {
  EXPECT_EQ(philox4x32_10(U4{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          U2{0xa4093822u, 0x299f31d0u}),
            (U4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(RngStream, WordsAreThePhiloxBlocksOfTheDocumentedCounter) {
  const uint64_t seed = 0x0123456789abcdefull;
  const uint64_t id = (uint64_t{0xabcdef} << 32) | 0x12345678u;
  RngStream s(seed, RngPurpose::Sampling, id);
  EXPECT_EQ(s.key(), (U2{0x89abcdefu, 0x01234567u}));
  EXPECT_EQ(RngStream::make_counter(3, id, 0x500000007ull),
            (U4{7u, 5u, 0x12345678u, 0x03abcdefu}));
  for (uint64_t block = 0; block < 3; ++block) {
    const U4 expect = philox4x32_10(RngStream::make_counter(3, id, block), s.key());
    for (int w = 0; w < 4; ++w) EXPECT_EQ(s.next_u32(), expect[w]) << "block " << block;
  }
  EXPECT_EQ(s.position(), 12u);
}

TEST(RngStream, DistinctPurposeIdAndSeedGiveDistinctStreams) {
  auto first8 = [](RngStream s) {
    std::vector<uint32_t> v;
    for (int i = 0; i < 8; ++i) v.push_back(s.next_u32());
    return v;
  };
  std::set<std::vector<uint32_t>> seen;
  for (uint32_t purpose : {1u, 2u, 3u, 4u, 5u})
    for (uint64_t id : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{1} << 32,
                        RngStream::kMaxId})
      for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{1} << 32})
        seen.insert(first8(RngStream(seed, purpose, id)));
  EXPECT_EQ(seen.size(), 5u * 5u * 3u);

  // Pairs that a naive xor-mixing of purpose and id high bits would alias: here the counters
  // differ in word 3.
  EXPECT_NE(RngStream::make_counter(1, uint64_t{2} << 32, 0),
            RngStream::make_counter(3, 0, 0));
  EXPECT_NE(RngStream::make_counter(1, uint64_t{1} << 56 >> 1, 0),
            RngStream::make_counter(1 | 0x80, 0, 0));
}

TEST(RngStream, StreamDependsOnlyOnItsAddress) {
  // Drawing from other streams (other ranks, other sequences) does not move this one.
  RngStream a(42, RngPurpose::Data, 7);
  std::vector<uint32_t> alone;
  for (int i = 0; i < 10; ++i) alone.push_back(a.next_u32());
  RngStream other1(42, RngPurpose::Data, 6), other2(42, RngPurpose::Data, 8);
  RngStream b(42, RngPurpose::Data, 7);
  for (int i = 0; i < 10; ++i) {
    other1.next_u32();
    EXPECT_EQ(b.next_u32(), alone[i]);
    other2.uniform();
  }
}

TEST(RngStream, SetPositionRestoresExactly) {
  RngStream a(2024, RngPurpose::Sampling, 99);
  a.next_u32();
  a.uniform_double();
  a.normal();
  a.uniform();  // position 6: mid-block
  EXPECT_EQ(a.position(), 6u);
  const uint64_t saved = a.position();
  std::vector<float> expect;
  for (int i = 0; i < 20; ++i) expect.push_back(i % 3 == 0 ? a.normal() : a.uniform());

  RngStream b(2024, RngPurpose::Sampling, 99);
  b.next_u32();  // the cache of b now holds block 0; set_position must not reuse it wrongly
  b.set_position(saved);
  for (int i = 0; i < 20; ++i) {
    const float got = i % 3 == 0 ? b.normal() : b.uniform();
    EXPECT_EQ(got, expect[i]) << i;
  }
  EXPECT_EQ(b.position(), a.position());

  // Going backwards works too.
  b.set_position(0);
  RngStream c(2024, RngPurpose::Sampling, 99);
  EXPECT_EQ(b.next_u64(), c.next_u64());
}

TEST(RngStream, WordsConsumedPerDraw) {
  RngStream s(1, 1, 1);
  s.uniform();
  EXPECT_EQ(s.position(), 1u);
  s.uniform_double();
  EXPECT_EQ(s.position(), 3u);
  s.normal();
  EXPECT_EQ(s.position(), 5u);
  s.normal_pair();
  EXPECT_EQ(s.position(), 7u);
  s.next_u64();
  EXPECT_EQ(s.position(), 9u);
}

TEST(RngStream, UniformRangeGranularityAndMean) {
  RngStream s(7, RngPurpose::Eval, 3);
  const int n = 100000;
  double sum = 0, sumd = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const float u = s.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    ASSERT_EQ(u * 16777216.0f, std::floor(u * 16777216.0f));  // a multiple of 2^-24
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    const double d = s.uniform_double();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    ASSERT_EQ(std::ldexp(d, 53), std::floor(std::ldexp(d, 53)));
    sumd += d;
  }
  // Standard error of the mean is sqrt(1/12/n) ~ 0.0009: 5 sigma bounds.
  EXPECT_NEAR(sum / n, 0.5, 0.0046);
  EXPECT_NEAR(sumd / n, 0.5, 0.0046);
  EXPECT_LT(lo, 0.001f);
  EXPECT_GT(hi, 0.999f);
}

TEST(RngStream, NormalMoments) {
  RngStream s(11, RngPurpose::Init, 0);
  const int n = 100000;
  double sum = 0, sum2 = 0, sum4 = 0;
  int beyond2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = s.normal();
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sum2 += x * x;
    sum4 += x * x * x * x;
    beyond2 += std::abs(x) > 2.0;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.016);  // se 0.0032
  EXPECT_NEAR(var, 1.0, 0.023);   // se sqrt(2/n) ~ 0.0045
  EXPECT_NEAR(sum4 / n, 3.0, 0.2);
  EXPECT_NEAR(beyond2 / double(n), 0.0455, 0.004);

  // The pair's two values are both N(0,1) and uncorrelated.
  double s0 = 0, s1 = 0, s01 = 0;
  for (int i = 0; i < n; ++i) {
    auto p = s.normal_pair();
    s0 += p[0] * p[0];
    s1 += p[1] * p[1];
    s01 += p[0] * p[1];
  }
  EXPECT_NEAR(s0 / n, 1.0, 0.03);
  EXPECT_NEAR(s1 / n, 1.0, 0.03);
  EXPECT_NEAR(s01 / n, 0.0, 0.02);
}

TEST(RngStream, BelowIsInRangeAndUnbiased) {
  RngStream s(5, RngPurpose::Data, 1);
  std::vector<int> counts(7, 0);
  const int n = 70000;
  for (int i = 0; i < n; ++i) {
    const uint32_t v = s.below(7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  double chi2 = 0;
  for (int c : counts) chi2 += (c - n / 7.0) * (c - n / 7.0) / (n / 7.0);
  EXPECT_LT(chi2, 22.5);  // 6 degrees of freedom: p ~ 0.001
  EXPECT_EQ(s.below(1), 0u);
  // A bound close to 2^32 exercises the rejection branch.
  for (int i = 0; i < 1000; ++i) ASSERT_LT(s.below(0xC0000000u), 0xC0000000u);
}

TEST(RngStream, RejectsAddressesThatWouldAlias) {
  EXPECT_THROW(RngStream(1, 256u, 0), opd::Error);
  EXPECT_THROW(RngStream(1, RngPurpose::Data, uint64_t{1} << 56), opd::Error);
  EXPECT_NO_THROW(RngStream(1, 255u, RngStream::kMaxId));
}
