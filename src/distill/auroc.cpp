// AUROC by ranks (see auroc.hpp).
#include "distill/auroc.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>

#include "core/error.hpp"

namespace opd::distill {

double auroc(const std::vector<double>& scores, const std::vector<int>& labels) {
  OPD_CHECK(scores.size() == labels.size(), "auroc: ", scores.size(), " scores but ", labels.size(),
            " labels");
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  const std::size_t n = scores.size();
  double n_pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(scores[i])) return kNaN;  // NaN breaks the ordering the ranks rely on
    if (labels[i] != 0) n_pos += 1;
  }
  const double n_neg = static_cast<double>(n) - n_pos;
  if (n_pos == 0 || n_neg == 0) return kNaN;

  // Mann-Whitney: with 1-based ranks in ascending score, a tie group sharing the average of its
  // ranks (which gives each tied positive/negative pair exactly 1/2),
  //   U = (sum of the positives' ranks) - n_pos (n_pos + 1) / 2 = #{pos > neg} + #{ties} / 2.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  double rank_sum = 0;  // every term is a multiple of 1/2 below 2^52: exact in double
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    // Positions i..j-1 hold equal scores: ranks i+1..j, whose average is (i + 1 + j) / 2.
    const double avg_rank = 0.5 * static_cast<double>(i + 1 + j);
    for (std::size_t t = i; t < j; ++t)
      if (labels[order[t]] != 0) rank_sum += avg_rank;
    i = j;
  }
  const double u = rank_sum - n_pos * (n_pos + 1) / 2;
  return u / (n_pos * n_neg);
}

}  // namespace opd::distill
