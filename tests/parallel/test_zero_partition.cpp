// ZeRO-1 ownership: every parameter has one owner, the load is balanced, the result deterministic.
#include <gtest/gtest.h>

#include <algorithm>

#include "parallel/zero_partition.hpp"

using opd::parallel::zero_owners;

TEST(ZeroPartition, BalancedAndDeterministic) {
  const std::vector<int64_t> sizes = {100, 5, 60, 60, 40, 1, 1, 33};
  const auto owner = zero_owners(sizes, 2);
  ASSERT_EQ(owner.size(), sizes.size());
  int64_t load[2] = {0, 0};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(owner[i] == 0 || owner[i] == 1);
    load[owner[i]] += sizes[i];
  }
  // Largest first to the lighter rank: 100→0, 60→1, 60→1 (120), 40→0 (140), 33→1 (153),
  // 5→0 (145), 1→0 (146), 1→0 (147).
  EXPECT_EQ(load[0], 147);
  EXPECT_EQ(load[1], 153);
  EXPECT_EQ(owner, (std::vector<int>{0, 0, 1, 1, 0, 0, 0, 1}));
  EXPECT_EQ(owner, zero_owners(sizes, 2));
  EXPECT_EQ(zero_owners(sizes, 1), std::vector<int>(sizes.size(), 0));
  const auto four = zero_owners(sizes, 4);
  EXPECT_EQ(*std::max_element(four.begin(), four.end()), 3);
}
