// Prompt sets mixed by weight: draws are a pure function of (seed, index), follow the weights,
// and stay inside each set.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "data/mixture_sampler.hpp"

using opd::data::MixtureSampler;

TEST(MixtureSampler, FollowsTheWeightsDeterministically) {
  MixtureSampler m({10, 1000, 5}, {1.0, 3.0, 0.0}, 42);
  int per_set[3] = {0, 0, 0};
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    auto [set, idx] = m.draw(static_cast<uint64_t>(i));
    ASSERT_GE(set, 0);
    ASSERT_LT(set, 3);
    ASSERT_GE(idx, 0);
    ASSERT_LT(idx, set == 0 ? 10 : set == 1 ? 1000 : 5);
    ++per_set[set];
  }
  EXPECT_EQ(per_set[2], 0);  // weight 0: never drawn
  EXPECT_NEAR(per_set[0] / double(n), 0.25, 0.015);
  EXPECT_NEAR(per_set[1] / double(n), 0.75, 0.015);
  // The same draw again, from another sampler with the same seed, and in a batch.
  MixtureSampler again({10, 1000, 5}, {1.0, 3.0, 0.0}, 42);
  EXPECT_EQ(again.draw(777), m.draw(777));
  EXPECT_EQ(m.draws(5, 3)[2], m.draw(7));
  MixtureSampler other({10, 1000, 5}, {1.0, 3.0, 0.0}, 43);
  int same = 0;
  for (int i = 0; i < 100; ++i) same += other.draw(static_cast<uint64_t>(i)) == m.draw(static_cast<uint64_t>(i));
  EXPECT_LT(same, 30);
}

TEST(MixtureSampler, RefusesImpossibleMixtures) {
  EXPECT_THROW(MixtureSampler({3, 0}, {1, 1}, 1), opd::Error);
  EXPECT_THROW(MixtureSampler({3, 4}, {0, 0}, 1), opd::Error);
  EXPECT_THROW(MixtureSampler({3, 4}, {1, -1}, 1), opd::Error);
}
