// backend AdamW: several steps against a float64 reference with bias correction, decoupled
// weight decay and grad_scale.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

struct RefState {
  std::vector<double> p, m, v;
};

void ref_step(RefState& s, const std::vector<double>& grad, const ops::AdamWParams& hp) {
  const double b1 = hp.beta1, b2 = hp.beta2;
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(hp.step));
  const double c2 = 1.0 - std::pow(b2, static_cast<double>(hp.step));
  for (std::size_t i = 0; i < s.p.size(); ++i) {
    double g = grad[i] * hp.grad_scale;
    s.m[i] = b1 * s.m[i] + (1.0 - b1) * g;
    s.v[i] = b2 * s.v[i] + (1.0 - b2) * g * g;
    double mhat = s.m[i] / c1, vhat = s.v[i] / c2;
    s.p[i] -= static_cast<double>(hp.lr) * (static_cast<double>(hp.weight_decay) * s.p[i] +
                                            mhat / (std::sqrt(vhat) + static_cast<double>(hp.eps)));
  }
}

}  // namespace

TEST(AdamW, SeveralStepsMatchReference) {
  const int64_t n = 1000;
  Tensor p = random_tensor({10, 100}, 1);
  Tensor m = Tensor::zeros({10, 100}), v = Tensor::zeros({10, 100});
  RefState ref{to_double(p), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  ops::AdamWParams hp;
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-6f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  for (int64_t step = 1; step <= 6; ++step) {
    SCOPED_TRACE(step);
    hp.step = step;
    Tensor g = random_tensor({10, 100}, 100 + step, -2.0f, 2.0f);
    ref_step(ref, to_double(g), hp);  // the float32 hyper-parameters, widened exactly
    ops::adamw_step(p, g, m, v, hp);
    EXPECT_TRUE(all_close(m, ref.m, 1e-5, 1e-7));
    EXPECT_TRUE(all_close(v, ref.v, 1e-5, 1e-9));
    EXPECT_TRUE(all_close(p, ref.p, 1e-5, 1e-7));
  }
}

TEST(AdamW, FirstStepMovesByLearningRateTimesSign) {
  // Step 1 from zero moments: mhat / sqrt(vhat) = sign(g), so p -= lr (wd p + sign(g)).
  Tensor p = Tensor::from_vector(std::vector<float>{1.0f, -2.0f, 0.5f}, {3});
  Tensor g = Tensor::from_vector(std::vector<float>{3.0f, -0.01f, 20.0f}, {3});
  Tensor m = Tensor::zeros({3}), v = Tensor::zeros({3});
  ops::AdamWParams hp;
  hp.lr = 0.1f;
  hp.eps = 0.0f;
  hp.weight_decay = 0.5f;
  hp.grad_scale = 0.25f;
  ops::adamw_step(p, g, m, v, hp);
  auto pv = p.to_vector();
  EXPECT_NEAR(pv[0], 1.0 - 0.1 * (0.5 * 1.0 + 1.0), 1e-6);
  EXPECT_NEAR(pv[1], -2.0 - 0.1 * (0.5 * -2.0 - 1.0), 1e-6);
  EXPECT_NEAR(pv[2], 0.5 - 0.1 * (0.5 * 0.5 + 1.0), 1e-6);
  // (1 - b1) g grad_scale and (1 - b2) (g grad_scale)^2, with the float32 betas
  EXPECT_NEAR(m.to_vector()[0], (1.0 - static_cast<double>(hp.beta1)) * 0.75, 1e-8);
  EXPECT_NEAR(v.to_vector()[2], (1.0 - static_cast<double>(hp.beta2)) * 25.0, 1e-8);
}

TEST(AdamW, MisuseThrows) {
  Tensor p = Tensor::zeros({4}), g = Tensor::zeros({5}), m = Tensor::zeros({4}),
         v = Tensor::zeros({4});
  ops::AdamWParams hp;
  EXPECT_THROW(ops::adamw_step(p, g, m, v, hp), opd::Error);
  Tensor g4 = Tensor::zeros({4});
  hp.step = 0;
  EXPECT_THROW(ops::adamw_step(p, g4, m, v, hp), opd::Error);
}
