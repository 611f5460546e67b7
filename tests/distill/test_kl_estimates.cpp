// Sampled-token KL estimates and the entropy gap against hand computations.
#include <gtest/gtest.h>

#include <cmath>

#include "distill/kl_estimates.hpp"

using opd::distill::kl_estimates;

TEST(KlEstimates, HandComputed) {
  // Position 1: p(y) = 0.5, q(y) = 0.25 → d = ln 0.5 = −0.6931: k1 = 0.6931, k3 = 0.5 − 1 + 0.6931.
  // Position 2: p(y) = 0.2, q(y) = 0.4 → d = ln 2 = 0.6931: k1 = −0.6931, k3 = 2 − 1 − 0.6931.
  const float lp[] = {std::log(0.5f), std::log(0.2f)};
  const float lq[] = {std::log(0.25f), std::log(0.4f)};
  const float hp[] = {1.0f, 0.5f};
  const float hq[] = {0.25f, NAN};  // the second position has no teacher entropy
  auto e = kl_estimates(lp, lq, hp, hq, 2);
  EXPECT_NEAR(e.k1(), 0.0, 1e-6);                                         // (0.6931 − 0.6931) / 2
  EXPECT_NEAR(e.k3(), ((0.5 - 1 + std::log(2.0)) + (2 - 1 - std::log(2.0))) / 2, 1e-6);  // = 0.25
  EXPECT_NEAR(e.k3(), 0.25, 1e-6);
  EXPECT_NEAR(e.entropy_gap(), 0.75, 1e-6);                               // |0.25 − 1| over one position
  // Teacher = student: both estimates vanish.
  auto z = kl_estimates(lp, lp, hp, hp, 2);
  EXPECT_EQ(z.k1(), 0.0);
  EXPECT_EQ(z.k3(), 0.0);
  EXPECT_EQ(z.entropy_gap(), 0.0);
  const float unknown[] = {NAN, NAN};
  EXPECT_TRUE(std::isnan(kl_estimates(lp, lq, hp, unknown, 2).entropy_gap()));
}
