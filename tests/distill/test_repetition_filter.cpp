// The degenerate-repetition filter of teacher_generate.
#include <gtest/gtest.h>

#include "distill/teacher_generate_stage.hpp"

using opd::distill::degenerate_repetition;

TEST(RepetitionFilter, CountsRepeatedNgrams) {
  const std::vector<int32_t> loop = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
  EXPECT_TRUE(degenerate_repetition(loop, 3, 3));   // "1 2 3" occurs 4 times
  EXPECT_FALSE(degenerate_repetition(loop, 3, 4));
  EXPECT_FALSE(degenerate_repetition(loop, 13, 1));  // longer than the response
  const std::vector<int32_t> varied = {5, 6, 7, 8, 9, 10, 11, 12};
  EXPECT_FALSE(degenerate_repetition(varied, 2, 1));
  EXPECT_TRUE(degenerate_repetition({4, 4, 4}, 1, 2));
}
