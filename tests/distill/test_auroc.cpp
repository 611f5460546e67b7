// auroc: hand cases (perfect, inverted, ties, a small mixed case, empty classes) and agreement
// with the O(n^2) count over all positive/negative pairs on random data with many ties.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "distill/auroc.hpp"

namespace {

using opd::distill::auroc;

// The definition: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 on
// a tie, 0 otherwise; averaged.
double pair_count(const std::vector<double>& s, const std::vector<int>& l) {
  double wins = 0, pairs = 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    for (std::size_t j = 0; j < s.size(); ++j)
      if (l[i] != 0 && l[j] == 0) {
        pairs += 1;
        wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
      }
  return wins / pairs;
}

TEST(Auroc, Perfect) { EXPECT_EQ(auroc({0.1, 0.2, 0.7, 0.9}, {0, 0, 1, 1}), 1.0); }

TEST(Auroc, Inverted) { EXPECT_EQ(auroc({0.9, 0.8, 0.2, 0.1}, {0, 0, 1, 1}), 0.0); }

TEST(Auroc, AllTies) { EXPECT_EQ(auroc({3.0, 3.0, 3.0, 3.0, 3.0}, {1, 0, 1, 0, 0}), 0.5); }

TEST(Auroc, MixedByHand) {
  // Positives 0.35, 0.8; negatives 0.1, 0.4. Pairs: 0.35>0.1 (1), 0.35<0.4 (0), 0.8>0.1 (1),
  // 0.8>0.4 (1): 3/4.
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
  // With a tie: positives {1, 2}, negatives {1, 0}: pairs 1=1 (1/2), 1>0 (1), 2>1 (1), 2>0 (1)
  // -> 3.5/4.
  EXPECT_DOUBLE_EQ(auroc({1, 2, 1, 0}, {1, 1, 0, 0}), 0.875);
  // Any nonzero label is a positive.
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.4, 0.35, 0.8}, {0, 0, 7, -1}), 0.75);
}

TEST(Auroc, EmptyClassOrNaNScoreIsNaN) {
  EXPECT_TRUE(std::isnan(auroc({0.1, 0.2}, {1, 1})));
  EXPECT_TRUE(std::isnan(auroc({0.1, 0.2}, {0, 0})));
  EXPECT_TRUE(std::isnan(auroc({}, {})));
  EXPECT_TRUE(std::isnan(auroc({0.1, std::numeric_limits<double>::quiet_NaN()}, {0, 1})));
}

TEST(Auroc, LengthMismatchIsAnError) { EXPECT_THROW(auroc({0.1, 0.2}, {1}), opd::Error); }

TEST(Auroc, MatchesPairCountOnRandomData) {
  std::mt19937_64 rng(12345);
  int compared = 0;
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 300);
    // Scores on a coarse grid so that ties are frequent; labels correlated with the score.
    std::vector<double> s(n);
    std::vector<int> l(n);
    std::uniform_int_distribution<int> grid(0, 20);
    std::uniform_real_distribution<double> u(0, 1);
    for (int i = 0; i < n; ++i) {
      s[i] = grid(rng) * 0.05;
      l[i] = u(rng) < 0.2 + 0.6 * s[i] ? 1 : 0;
    }
    const double expected = pair_count(s, l);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(auroc(s, l)));
    } else {
      EXPECT_NEAR(auroc(s, l), expected, 1e-12) << "trial " << trial << " n " << n;
      ++compared;
    }
  }
  EXPECT_GT(compared, 40);
}

}  // namespace
