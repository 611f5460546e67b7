// AUROC of a score for separating two classes (DESIGN.md §5: how well the sequence-mean teacher
// reward separates correct from incorrect rollouts).
#pragma once

#include <vector>

namespace opd::distill {

// P(score of a random positive > score of a random negative), ties counting 1/2 — the
// Mann-Whitney U statistic over n_pos * n_neg. labels[i] != 0 marks a positive. O(n log n) by
// ranks. NaN when either class is empty or any score is NaN (no ranking exists then).
// scores and labels must have the same length.
double auroc(const std::vector<double>& scores, const std::vector<int>& labels);

}  // namespace opd::distill
