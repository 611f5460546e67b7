// backend RoPE (Hugging Face rotate_half): forward against float64 loops, the convention on a
// hand-computed case, backward as the exact inverse, and against finite differences.
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

// out_i = x_i cos - x_{i+E/2} sin, out_{i+E/2} = x_{i+E/2} cos + x_i sin, angle pos *
// theta^(-2i/E).
std::vector<double> ref_rope(const std::vector<double>& x, const std::vector<int32_t>& pos,
                             int64_t h, int64_t e, double theta) {
  std::vector<double> y(x.size());
  const int64_t half = e / 2;
  for (std::size_t n = 0; n < pos.size(); ++n)
    for (int64_t k = 0; k < h; ++k)
      for (int64_t i = 0; i < half; ++i) {
        double a = pos[n] * std::pow(theta, -2.0 * i / e);
        std::size_t o = (n * h + k) * e;
        double x1 = x[o + i], x2 = x[o + i + half];
        y[o + i] = x1 * std::cos(a) - x2 * std::sin(a);
        y[o + i + half] = x2 * std::cos(a) + x1 * std::sin(a);
      }
  return y;
}

}  // namespace

TEST(Rope, HuggingFaceConvention) {
  // E = 4: pairs (x0, x2) turn by pos * 1, (x1, x3) by pos * theta^(-1/2) = pos / 100.
  Tensor x = Tensor::from_vector(std::vector<float>{1, 1, 0, 0}, {1, 1, 4});
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{2}, {1});
  ops::rope_forward(x, pos, 10000.0f);
  auto y = x.to_vector();
  EXPECT_NEAR(y[0], std::cos(2.0), 1e-7);
  EXPECT_NEAR(y[2], std::sin(2.0), 1e-7);
  EXPECT_NEAR(y[1], std::cos(0.02), 1e-7);
  EXPECT_NEAR(y[3], std::sin(0.02), 1e-7);
}

TEST(Rope, ForwardMatchesReference) {
  const int64_t h = 3, e = 16;
  // Scattered positions (one table row per row) and a batch of sequences repeating a few
  // positions (one table row per distinct position), negative ones included.
  const std::vector<std::vector<int32_t>> position_sets{
      {0, 1, 7, 100, 4095, 30000}, {5, 6, 7, 8, 5, 6, 7, 8}, {-2, -1, 0, 1, 0, 1}};
  for (const auto& p : position_sets) {
    const int64_t n = static_cast<int64_t>(p.size());
    Tensor x = random_tensor({n, h, e}, 1);
    Tensor pos = Tensor::from_vector(p, {n});
    for (float theta : {10000.0f, 1e6f}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " theta=" << theta);
      Tensor y = x.clone();
      ops::rope_forward(y, pos, theta);
      EXPECT_TRUE(all_close(y, ref_rope(to_double(x), p, h, e, theta), 1e-5, 1e-6));
      ops::rope_backward(y, pos, theta);
      EXPECT_TRUE(all_close(y, to_double(x), 1e-6, 1e-6));
    }
  }
}

TEST(Rope, BackwardInvertsForward) {
  const int64_t n = 5, h = 2, e = 8;
  Tensor x = random_tensor({n, h, e}, 2);
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{3, 0, 9, 511, 2048}, {n});
  Tensor y = x.clone();
  ops::rope_forward(y, pos, 10000.0f);
  ops::rope_backward(y, pos, 10000.0f);
  EXPECT_TRUE(all_close(y, to_double(x), 1e-6, 1e-6));
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  const int64_t n = 4, h = 2, e = 6;
  std::vector<int32_t> p{0, 5, 17, 300};
  Tensor pos = Tensor::from_vector(p, {n});
  Tensor x = random_tensor({n, h, e}, 3);
  Tensor proj = random_tensor({n, h, e}, 4);
  auto pd = to_double(proj);
  auto loss = [&](const std::vector<double>& xv) {
    auto y = ref_rope(xv, p, h, e, 500.0);
    double l = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) l += pd[i] * y[i];
    return l;
  };
  auto fd = opd::testing::finite_difference(loss, to_double(x));
  Tensor dx = proj.clone();
  ops::rope_backward(dx, pos, 500.0f);
  EXPECT_TRUE(all_close(dx, fd, 1e-4, 1e-6));
}

TEST(Rope, MisuseThrows) {
  Tensor odd = random_tensor({2, 1, 5}, 5);
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{0, 1}, {2});
  EXPECT_THROW(ops::rope_forward(odd, pos, 10000.0f), opd::Error);
  Tensor x = random_tensor({3, 1, 4}, 6);
  EXPECT_THROW(ops::rope_forward(x, pos, 10000.0f), opd::Error);  // 3 rows, 2 positions
  Tensor flat = random_tensor({2, 4}, 7);
  EXPECT_THROW(ops::rope_backward(flat, pos, 10000.0f), opd::Error);
}
