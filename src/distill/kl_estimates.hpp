// Sampled-token estimates of the reverse KL and the entropy gap (DESIGN.md §5), averaged over
// response positions: with d = log q(y) − log p(y) at the sampled y ~ p,
//   k1 = −d (unbiased, noisy, can be negative),  k3 = e^d − 1 − d (unbiased, always ≥ 0),
// and the entropy gap |H(q) − H(p)| over the positions where H(q) is known.
#pragma once

#include <cstdint>

namespace opd::distill {

// Sums and counts, so that estimates from several ranks add up; the accessors give the means.
struct KlEstimates {
  double k1_sum = 0, k3_sum = 0, gap_sum = 0;
  double n = 0, gap_n = 0;  // positions; positions with a finite H(q)
  double k1() const;
  double k3() const;
  double entropy_gap() const;  // NaN when no H(q) is finite
};

KlEstimates kl_estimates(const float* logp_y, const float* logq_y, const float* entropy_p,
                         const float* entropy_q, int64_t n);

}  // namespace opd::distill
