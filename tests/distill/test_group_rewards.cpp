// Group-normalised outcome rewards (GRPO-style): normalised within the responses to one prompt.
#include <gtest/gtest.h>

#include <cmath>

#include "distill/distill_update.hpp"

using opd::distill::group_normalised_rewards;

TEST(GroupRewards, NormalisedWithinEachPrompt) {
  // Prompt 7: rewards 1, 0, 0, 1 (mean 0.5, std 0.5); prompt 3: all correct (no signal).
  auto a = group_normalised_rewards({7, 7, 7, 7, 3, 3}, {1, 0, 0, 1, 1, 1});
  ASSERT_EQ(a.size(), 6u);
  EXPECT_NEAR(a[0], 1.0, 1e-5);
  EXPECT_NEAR(a[1], -1.0, 1e-5);
  EXPECT_NEAR(a[2], -1.0, 1e-5);
  EXPECT_NEAR(a[3], 1.0, 1e-5);
  EXPECT_EQ(a[4], 0.0);
  EXPECT_EQ(a[5], 0.0);
  // One right out of three: mean 1/3, std sqrt(2)/3.
  auto b = group_normalised_rewards({1, 1, 1}, {0, 1, 0});
  EXPECT_NEAR(b[1], (2.0 / 3) / (std::sqrt(2.0) / 3), 1e-5);
  EXPECT_NEAR(b[0] + b[1] + b[2], 0.0, 1e-9);
}
