// backend elementwise ops (fill, copy, scale, axpy, add, add_bias, bias_backward, sum_squares)
// against plain float64 loops.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::DType;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::random_tensor;
using opd::testing::to_double;

TEST(Elementwise, FillF32AndI32) {
  Tensor x = random_tensor({3, 5}, 1);
  ops::fill(x, 2.5f);
  for (float v : x.to_vector()) EXPECT_EQ(v, 2.5f);
  Tensor i = Tensor::empty({7}, DType::I32);
  ops::fill(i, -3.0f);
  for (int32_t v : i.to_vector_i32()) EXPECT_EQ(v, -3);
  EXPECT_THROW(ops::fill(i, 0.5f), opd::Error);  // not an integer
  EXPECT_THROW(ops::fill(i, 3e9f), opd::Error);  // out of i32 range
  Tensor e = Tensor::empty({0, 4});
  ops::fill(e, 1.0f);  // empty: nothing to do, no error
  Tensor bf = Tensor::empty({4}, DType::BF16);
  EXPECT_THROW(ops::fill(bf, 0.0f), opd::Error);
}

TEST(Elementwise, CopySameDtypeAndNumel) {
  Tensor a = random_tensor({4, 6}, 2);
  Tensor b = Tensor::empty({24});
  ops::copy(a, b);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  Tensor ia = opd::testing::random_ids({10}, 1000, 3);
  Tensor ib = Tensor::empty({2, 5}, DType::I32);
  ops::copy(ia, ib);
  EXPECT_EQ(ia.to_vector_i32(), ib.to_vector_i32());
  Tensor wrong_n = Tensor::empty({23});
  EXPECT_THROW(ops::copy(a, wrong_n), opd::Error);
  Tensor wrong_t = Tensor::empty({24}, DType::I32);
  EXPECT_THROW(ops::copy(a, wrong_t), opd::Error);
}

TEST(Elementwise, ScaleAxpyAdd) {
  const int64_t n = 1031;
  Tensor x = random_tensor({n}, 4), y = random_tensor({n}, 5);
  auto xd = to_double(x), yd = to_double(y);

  Tensor s = x.clone();
  ops::scale(s, -0.75f);
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = -0.75 * xd[i];
  EXPECT_TRUE(all_close(s, want, 1e-6, 1e-7));

  Tensor z = y.clone();
  ops::axpy(1.5f, x, z);
  for (int64_t i = 0; i < n; ++i) want[i] = yd[i] + 1.5 * xd[i];
  EXPECT_TRUE(all_close(z, want, 1e-6, 1e-6));

  Tensor out = Tensor::empty({n});
  ops::add(x, y, out);
  for (int64_t i = 0; i < n; ++i) want[i] = xd[i] + yd[i];
  EXPECT_TRUE(all_close(out, want, 1e-6, 1e-6));
  Tensor alias = x.clone();
  ops::add(alias, y, alias);  // out aliasing a
  EXPECT_TRUE(all_close(alias, want, 1e-6, 1e-6));
  Tensor alias_b = y.clone();
  ops::add(x, alias_b, alias_b);  // out aliasing b
  EXPECT_TRUE(all_close(alias_b, want, 1e-6, 1e-6));

  Tensor short_y = Tensor::empty({n - 1});
  EXPECT_THROW(ops::axpy(1.0f, x, short_y), opd::Error);
  EXPECT_THROW(ops::add(x, short_y, out), opd::Error);
  Tensor ints = Tensor::empty({n}, DType::I32);
  EXPECT_THROW(ops::scale(ints, 2.0f), opd::Error);
}

TEST(Elementwise, AddBiasOverLastDimension) {
  Tensor x = random_tensor({3, 4, 5}, 6);
  Tensor bias = random_tensor({5}, 7);
  auto xd = to_double(x), bd = to_double(bias);
  ops::add_bias(x, bias);
  std::vector<double> want(xd.size());
  for (std::size_t i = 0; i < xd.size(); ++i) want[i] = xd[i] + bd[i % 5];
  EXPECT_TRUE(all_close(x, want, 1e-6, 1e-6));
  Tensor bad = random_tensor({4}, 8);
  EXPECT_THROW(ops::add_bias(x, bad), opd::Error);
}

TEST(Elementwise, BiasBackwardAccumulatesColumnSums) {
  // 300 columns: more than one column block.
  const int64_t n = 257, d = 300;
  Tensor dy = random_tensor({n, d}, 9);
  Tensor db = random_tensor({d}, 10);
  auto dyd = to_double(dy);
  auto want = to_double(db);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < d; ++j) want[j] += dyd[r * d + j];
  ops::bias_backward(dy, db);
  EXPECT_TRUE(all_close(db, want, 1e-6, 1e-6));
  Tensor bad = Tensor::zeros({d + 1});
  EXPECT_THROW(ops::bias_backward(dy, bad), opd::Error);
}

TEST(Elementwise, SumSquaresInDouble) {
  const int64_t n = 3 * 4096 + 13;  // several blocks and a ragged tail
  Tensor x = random_tensor({n}, 11, -3.0f, 3.0f);
  auto xd = to_double(x);
  double want = 0.0;
  for (double v : xd) want += v * v;
  EXPECT_NEAR(ops::sum_squares(x), want, 1e-12 * want);
  // Values whose squares a float accumulator would lose: 1e4^2 + many 1^2.
  Tensor y = Tensor::empty({20001});
  ops::fill(y, 1.0f);
  y.data<float>()[0] = 1e4f;
  EXPECT_EQ(ops::sum_squares(y), 1e8 + 20000.0);
  EXPECT_EQ(ops::sum_squares(Tensor::empty({0})), 0.0);
}
