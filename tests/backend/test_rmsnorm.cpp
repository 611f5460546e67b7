// backend RMSNorm forward against float64 loops, backward (dx, dw) against finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::finite_difference;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

// y = x / sqrt(mean(x^2) + eps) * w row-wise; rstd (if given) receives 1/rms.
std::vector<double> ref_rmsnorm(const std::vector<double>& x, const std::vector<double>& w,
                                double eps, std::vector<double>* rstd = nullptr) {
  const std::size_t d = w.size(), n = x.size() / d;
  std::vector<double> y(x.size());
  if (rstd) rstd->assign(n, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    double ss = 0.0;
    for (std::size_t j = 0; j < d; ++j) ss += x[r * d + j] * x[r * d + j];
    double inv = 1.0 / std::sqrt(ss / d + eps);
    for (std::size_t j = 0; j < d; ++j) y[r * d + j] = x[r * d + j] * inv * w[j];
    if (rstd) (*rstd)[r] = inv;
  }
  return y;
}

}  // namespace

TEST(RmsNorm, ForwardMatchesReference) {
  for (int64_t d : {7, 300}) {  // 300: more than one column block in the backward
    SCOPED_TRACE(d);
    const int64_t n = 5;
    Tensor x = random_tensor({n, d}, 1, -2.0f, 2.0f);
    Tensor w = random_tensor({d}, 2, 0.5f, 1.5f);
    Tensor y = Tensor::empty({n, d}), rstd = Tensor::empty({n});
    ops::rmsnorm_forward(x, w, 1e-5f, y, &rstd);
    std::vector<double> want_rstd;
    auto want = ref_rmsnorm(to_double(x), to_double(w), 1e-5, &want_rstd);
    EXPECT_TRUE(all_close(y, want, 1e-5, 1e-6));
    EXPECT_TRUE(all_close(rstd, want_rstd, 1e-6, 0.0));
    Tensor y2 = Tensor::empty({n, d});
    ops::rmsnorm_forward(x, w, 1e-5f, y2, nullptr);  // rstd is optional
    EXPECT_EQ(y2.to_vector(), y.to_vector());
  }
}

TEST(RmsNorm, EpsDominatesSmallRows) {
  Tensor x = Tensor::zeros({1, 4});
  x.data<float>()[0] = 1e-3f;
  Tensor w = Tensor::empty({4});
  ops::fill(w, 1.0f);
  Tensor y = Tensor::empty({1, 4}), rstd = Tensor::empty({1});
  ops::rmsnorm_forward(x, w, 0.5f, y, &rstd);
  EXPECT_NEAR(rstd.data<float>()[0], 1.0 / std::sqrt(0.25e-6 + 0.5), 1e-6);
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  for (int64_t d : {7, 300}) {
    SCOPED_TRACE(d);
    const int64_t n = 3;
    const double eps = 1e-5;
    Tensor x = random_tensor({n, d}, 3, -2.0f, 2.0f);
    Tensor w = random_tensor({d}, 4, 0.5f, 1.5f);
    Tensor proj = random_tensor({n, d}, 5);  // L = sum(proj * y)
    auto xd = to_double(x), wd = to_double(w), pd = to_double(proj);
    auto loss_x = [&](const std::vector<double>& xv) {
      auto y = ref_rmsnorm(xv, wd, eps);
      double l = 0.0;
      for (std::size_t i = 0; i < y.size(); ++i) l += pd[i] * y[i];
      return l;
    };
    auto loss_w = [&](const std::vector<double>& wv) {
      auto y = ref_rmsnorm(xd, wv, eps);
      double l = 0.0;
      for (std::size_t i = 0; i < y.size(); ++i) l += pd[i] * y[i];
      return l;
    };
    auto fd_x = finite_difference(loss_x, xd);
    auto fd_w = finite_difference(loss_w, wd);

    Tensor y = Tensor::empty({n, d}), rstd = Tensor::empty({n});
    ops::rmsnorm_forward(x, w, static_cast<float>(eps), y, &rstd);
    Tensor dx = random_tensor({n, d}, 6);  // overwritten
    Tensor dw = random_tensor({d}, 7);     // accumulated into
    auto dw0 = to_double(dw);
    ops::rmsnorm_backward(x, w, rstd, proj, dx, dw);
    EXPECT_TRUE(all_close(dx, fd_x, 1e-4, 1e-5));
    auto dw_added = to_double(dw);
    for (std::size_t j = 0; j < dw_added.size(); ++j) dw_added[j] -= dw0[j];
    EXPECT_TRUE(all_close(dw_added, fd_w, 1e-4, 1e-5));
  }
}

TEST(RmsNorm, MisuseThrows) {
  Tensor x = random_tensor({3, 4}, 8), w = random_tensor({5}, 9);
  Tensor y = Tensor::empty({3, 4}), rstd = Tensor::empty({3});
  EXPECT_THROW(ops::rmsnorm_forward(x, w, 1e-5f, y, &rstd), opd::Error);
  Tensor w4 = random_tensor({4}, 10), rstd_bad = Tensor::empty({2});
  EXPECT_THROW(ops::rmsnorm_forward(x, w4, 1e-5f, y, &rstd_bad), opd::Error);
  Tensor y_bad = Tensor::empty({4, 3});
  EXPECT_THROW(ops::rmsnorm_forward(x, w4, 1e-5f, y_bad, nullptr), opd::Error);
  Tensor dx = Tensor::empty({3, 4}), dw_bad = Tensor::zeros({3});
  EXPECT_THROW(ops::rmsnorm_backward(x, w4, rstd, y, dx, dw_bad), opd::Error);
}

// A bf16 output (a GEMM operand in mixed precision) holds exactly the f32 output cast to bf16;
// other dtypes are refused.
TEST(RmsNorm, Bf16OutputIsTheF32OutputRounded) {
  const Tensor x = random_tensor({7, 33}, 50), w = random_tensor({33}, 51, 0.5f, 1.5f);
  Tensor y = Tensor::empty({7, 33}), rstd = Tensor::empty({7}), rstd2 = Tensor::empty({7});
  ops::rmsnorm_forward(x, w, 1e-5f, y, &rstd);
  Tensor want = Tensor::empty({7, 33}, opd::core::DType::BF16);
  ops::cast(y, want);
  Tensor got = Tensor::empty({7, 33}, opd::core::DType::BF16);
  ops::rmsnorm_forward(x, w, 1e-5f, got, &rstd2);
  EXPECT_EQ(std::vector<uint16_t>(got.data<uint16_t>(), got.data<uint16_t>() + got.numel()),
            std::vector<uint16_t>(want.data<uint16_t>(), want.data<uint16_t>() + want.numel()));
  EXPECT_EQ(rstd2.to_vector(), rstd.to_vector());
  Tensor bad = Tensor::empty({7, 33}, opd::core::DType::I32);
  EXPECT_THROW(ops::rmsnorm_forward(x, w, 1e-5f, bad, nullptr), opd::Error);
}
