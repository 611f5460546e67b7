#include "distill/kl_estimates.hpp"

#include <cmath>
#include <limits>

namespace opd::distill {

namespace {
double ratio(double a, double b) { return b > 0 ? a / b : std::numeric_limits<double>::quiet_NaN(); }
}  // namespace

double KlEstimates::k1() const { return ratio(k1_sum, n); }
double KlEstimates::k3() const { return ratio(k3_sum, n); }
double KlEstimates::entropy_gap() const { return ratio(gap_sum, gap_n); }

KlEstimates kl_estimates(const float* logp_y, const float* logq_y, const float* entropy_p,
                         const float* entropy_q, int64_t n) {
  KlEstimates e;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(logq_y[i]) - logp_y[i];
    e.k1_sum += -d;
    e.k3_sum += std::expm1(d) - d;
    if (std::isfinite(entropy_q[i])) {
      e.gap_sum += std::abs(static_cast<double>(entropy_q[i]) - entropy_p[i]);
      e.gap_n += 1;
    }
  }
  e.n = static_cast<double>(n);
  return e;
}

}  // namespace opd::distill
