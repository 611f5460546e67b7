#include "distill/kl_estimates.hpp"

#include <cmath>
#include <limits>

namespace opd::distill {

KlEstimates kl_estimates(const float* logp_y, const float* logq_y, const float* entropy_p,
                         const float* entropy_q, int64_t n) {
  KlEstimates e;
  double gap = 0;
  int64_t gap_n = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(logq_y[i]) - logp_y[i];
    e.k1 += -d;
    e.k3 += std::expm1(d) - d;
    if (std::isfinite(entropy_q[i])) gap += std::abs(static_cast<double>(entropy_q[i]) - entropy_p[i]), ++gap_n;
  }
  if (n > 0) {
    e.k1 /= static_cast<double>(n);
    e.k3 /= static_cast<double>(n);
  }
  e.entropy_gap = gap_n ? gap / static_cast<double>(gap_n) : std::numeric_limits<double>::quiet_NaN();
  return e;
}

}  // namespace opd::distill
