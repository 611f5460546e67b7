// backend SwiGLU: forward against float64, backward (d_gate, d_up) against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/fast_exp.hpp"
#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

std::vector<double> ref_swiglu(const std::vector<double>& g, const std::vector<double>& u) {
  std::vector<double> y(g.size());
  for (std::size_t i = 0; i < g.size(); ++i) y[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return y;
}

}  // namespace

TEST(SwiGlu, ForwardMatchesReference) {
  Tensor gate = random_tensor({4, 33}, 1, -6.0f, 6.0f);
  Tensor up = random_tensor({4, 33}, 2);
  Tensor out = Tensor::empty({4, 33});
  ops::swiglu_forward(gate, up, out);
  EXPECT_TRUE(all_close(out, ref_swiglu(to_double(gate), to_double(up)), 1e-5, 1e-7));
}

TEST(SwiGlu, LargeGatesStayFinite) {
  Tensor gate = Tensor::from_vector(std::vector<float>{-200.0f, -90.0f, 90.0f, 200.0f}, {4});
  Tensor up = Tensor::from_vector(std::vector<float>{1, 1, 1, 1}, {4});
  Tensor out = Tensor::empty({4}), dg = Tensor::empty({4}), du = Tensor::empty({4});
  ops::swiglu_forward(gate, up, out);
  ops::swiglu_backward(gate, up, up, dg, du);
  auto o = out.to_vector(), g = dg.to_vector(), u = du.to_vector();
  EXPECT_EQ(o[0], 0.0f);
  EXPECT_EQ(o[3], 200.0f);
  EXPECT_EQ(g[0], 0.0f);
  EXPECT_EQ(g[3], 1.0f);
  EXPECT_EQ(u[3], 200.0f);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isfinite(o[i]) && std::isfinite(g[i]));
}

TEST(SwiGlu, BackwardMatchesFiniteDifferences) {
  const int64_t n = 3, d = 17;
  Tensor gate = random_tensor({n, d}, 3, -4.0f, 4.0f);
  Tensor up = random_tensor({n, d}, 4);
  Tensor proj = random_tensor({n, d}, 5);
  auto gd = to_double(gate), ud = to_double(up), pd = to_double(proj);
  auto dot = [&](const std::vector<double>& y) {
    double l = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) l += pd[i] * y[i];
    return l;
  };
  auto fd_g = opd::testing::finite_difference(
      [&](const std::vector<double>& g) { return dot(ref_swiglu(g, ud)); }, gd);
  auto fd_u = opd::testing::finite_difference(
      [&](const std::vector<double>& u) { return dot(ref_swiglu(gd, u)); }, ud);
  Tensor dg = random_tensor({n, d}, 6), du = random_tensor({n, d}, 7);  // both overwritten
  ops::swiglu_backward(gate, up, proj, dg, du);
  EXPECT_TRUE(all_close(dg, fd_g, 1e-4, 1e-6));
  EXPECT_TRUE(all_close(du, fd_u, 1e-4, 1e-6));
}

TEST(SwiGlu, MisuseThrows) {
  Tensor gate = random_tensor({2, 3}, 8), up = random_tensor({2, 4}, 9);
  Tensor out = Tensor::empty({2, 3});
  EXPECT_THROW(ops::swiglu_forward(gate, up, out), opd::Error);
  Tensor up_ok = random_tensor({2, 3}, 10), dg = Tensor::empty({5}), du = Tensor::empty({2, 3});
  EXPECT_THROW(ops::swiglu_backward(gate, up_ok, out, dg, du), opd::Error);
}

// The vectorisable exp behind SwiGLU's sigmoid (and attention's softmax).
TEST(SwiGlu, FastExpIsAccurateOverItsRange) {
  double worst = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01371f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(opd::backend::cpu::fast_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(opd::backend::cpu::fast_exp(0.0f), 1.0f);
  for (float x : {-100.0f, -1000.0f, -1e7f, -1e30f})
    EXPECT_EQ(opd::backend::cpu::fast_exp(x), 0.0f) << x;  // underflow
  for (float x : {100.0f, 1000.0f, 1e7f, 1e30f})
    EXPECT_EQ(opd::backend::cpu::fast_exp(x), INFINITY) << x;  // overflow
}

// bf16 outputs (GEMM operands in mixed precision) hold exactly the f32 outputs cast to bf16.
TEST(SwiGlu, Bf16OutputsAreTheF32OutputsRounded) {
  const auto bf16 = opd::core::DType::BF16;
  const Tensor g = random_tensor({5, 40}, 60, -4.0f, 4.0f), u = random_tensor({5, 40}, 61);
  const Tensor d = random_tensor({5, 40}, 62);
  auto bits = [](const Tensor& t) {
    return std::vector<uint16_t>(t.data<uint16_t>(), t.data<uint16_t>() + t.numel());
  };
  auto rounded = [&](const Tensor& f) {
    Tensor h = Tensor::empty(f.shape(), bf16);
    ops::cast(f, h);
    return bits(h);
  };
  Tensor out = Tensor::empty({5, 40}), out16 = Tensor::empty({5, 40}, bf16);
  ops::swiglu_forward(g, u, out);
  ops::swiglu_forward(g, u, out16);
  EXPECT_EQ(bits(out16), rounded(out));
  Tensor dg = Tensor::empty({5, 40}), du = Tensor::empty({5, 40});
  Tensor dg16 = Tensor::empty({5, 40}, bf16), du16 = Tensor::empty({5, 40}, bf16);
  ops::swiglu_backward(g, u, d, dg, du);
  ops::swiglu_backward(g, u, d, dg16, du16);
  EXPECT_EQ(bits(dg16), rounded(dg));
  EXPECT_EQ(bits(du16), rounded(du));
}
