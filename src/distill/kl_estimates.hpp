// Sampled-token estimates of the reverse KL and the entropy gap (DESIGN.md §5), averaged over
// response positions: with d = log q(y) − log p(y) at the sampled y ~ p,
//   k1 = −d (unbiased, noisy, can be negative),  k3 = e^d − 1 − d (unbiased, always ≥ 0),
// and the entropy gap |H(q) − H(p)| over the positions where H(q) is known.
#pragma once

#include <cstdint>

namespace opd::distill {

struct KlEstimates {
  double k1 = 0, k3 = 0, entropy_gap = 0;  // entropy_gap NaN when no H(q) is finite
};

KlEstimates kl_estimates(const float* logp_y, const float* logq_y, const float* entropy_p,
                         const float* entropy_q, int64_t n);

}  // namespace opd::distill
