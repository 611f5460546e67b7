// backend gemm / gemm_batched against a float64 triple loop: every transpose combination,
// alpha/beta, the single-row and single-column (sgemv) paths, batches and misuse; bf16 operands
// (mixed precision) and the f32 <-> bf16 cast.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "backend/ops.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::DType;
using opd::core::Shape;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

// c = alpha op(a) op(b) + beta c, all stored row-major; a is [m,k] or [k,m], b [k,n] or [n,k].
std::vector<double> ref_gemm(const std::vector<double>& a, bool ta, const std::vector<double>& b,
                             bool tb, std::vector<double> c, int64_t m, int64_t n, int64_t k,
                             double alpha, double beta) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        double av = ta ? a[p * m + i] : a[i * k + p];
        double bv = tb ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      c[i * n + j] = alpha * s + (beta == 0.0 ? 0.0 : beta * c[i * n + j]);
    }
  return c;
}

Shape shape_a(int64_t m, int64_t k, bool ta) { return ta ? Shape{k, m} : Shape{m, k}; }
Shape shape_b(int64_t k, int64_t n, bool tb) { return tb ? Shape{n, k} : Shape{k, n}; }

void check_gemm(int64_t m, int64_t n, int64_t k, bool ta, bool tb, float alpha, float beta,
                uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ta=" << ta
                                    << " tb=" << tb << " alpha=" << alpha << " beta=" << beta);
  Tensor a = random_tensor(shape_a(m, k, ta), seed);
  Tensor b = random_tensor(shape_b(k, n, tb), seed + 1);
  Tensor c = random_tensor({m, n}, seed + 2);
  if (beta == 0.0f) ops::fill(c, std::numeric_limits<float>::quiet_NaN());  // must be ignored
  auto want = ref_gemm(to_double(a), ta, to_double(b), tb, to_double(c), m, n, k, alpha, beta);
  ops::gemm(a, ta, b, tb, c, alpha, beta);
  EXPECT_TRUE(all_close(c, want, 1e-5, 1e-5));
}

}  // namespace

TEST(Gemm, AllTransposesAlphaBeta) {
  uint64_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_gemm(7, 5, 9, ta, tb, 1.0f, 0.0f, seed += 3);
      check_gemm(7, 5, 9, ta, tb, 0.7f, -1.3f, seed += 3);
      check_gemm(33, 65, 130, ta, tb, -0.5f, 1.0f, seed += 3);
    }
}

TEST(Gemm, SingleRowAndSingleColumnUseGemvPath) {
  uint64_t seed = 200;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n] : {std::pair<int64_t, int64_t>{1, 37}, {41, 1}, {1, 1}}) {
        check_gemm(m, n, 23, ta, tb, 1.0f, 0.0f, seed += 3);
        check_gemm(m, n, 23, ta, tb, 0.3f, 2.0f, seed += 3);
      }
}

TEST(Gemm, LeadingDimensionsFlattenIntoRows) {
  // x [2, 3, 4] @ w[5, 4]^T -> y [2, 3, 5], as a linear layer over a batch of sequences.
  Tensor x = random_tensor({2, 3, 4}, 300);
  Tensor w = random_tensor({5, 4}, 301);
  Tensor y = Tensor::empty({2, 3, 5});
  ops::gemm(x, false, w, true, y);
  auto want =
      ref_gemm(to_double(x), false, to_double(w), true, std::vector<double>(30), 6, 5, 4, 1.0, 0.0);
  EXPECT_TRUE(all_close(y, want, 1e-5, 1e-6));
}

TEST(Gemm, EmptyInnerDimensionScalesC) {
  Tensor a = Tensor::empty({3, 0});
  Tensor b = Tensor::empty({0, 2});
  Tensor c = random_tensor({3, 2}, 302);
  auto cd = to_double(c);
  ops::gemm(a, false, b, false, c, 1.0f, 0.5f);
  for (auto& v : cd) v *= 0.5;
  EXPECT_TRUE(all_close(c, cd, 1e-7, 0.0));
  ops::fill(c, std::numeric_limits<float>::quiet_NaN());
  ops::gemm(a, false, b, false, c, 1.0f, 0.0f);
  for (float v : c.to_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(Gemm, ResidualIsTheResidualPlusTheProductRounded) {
  // out = fl(residual + fl(op(a) op(b))): the product rounded to f32 first, as a GEMM into its
  // own buffer followed by an add; the float64 reference agrees within f32 rounding.
  const int64_t m = 7, n = 5, k = 300;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "ta " << ta << " tb " << tb);
      Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, 71);
      Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, 72);
      Tensor r = random_tensor({m, n}, 73);
      Tensor out = Tensor::empty({m, n}), scratch = Tensor::empty({m, n});
      ops::gemm_residual(a, ta, b, tb, r, out, scratch);
      Tensor product = Tensor::empty({m, n}), expected = Tensor::empty({m, n});
      ops::gemm(a, ta, b, tb, product);
      ops::add(r, product, expected);
      EXPECT_EQ(out.to_vector(), expected.to_vector());
      EXPECT_TRUE(all_close(to_double(out),
                            ref_gemm(to_double(a), ta, to_double(b), tb, to_double(r), m, n, k, 1.0, 1.0),
                            1e-5, 1e-5));
      // In place: the residual stream updated where it is.
      ops::gemm_residual(a, ta, b, tb, r, r, scratch);
      EXPECT_EQ(r.to_vector(), expected.to_vector());
    }
}

TEST(Gemm, Batched) {
  const int64_t L = 3;
  uint64_t seed = 400;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] :
           {std::tuple<int64_t, int64_t, int64_t>{4, 6, 5}, {1, 6, 5}, {4, 1, 5}}) {
        SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " m=" << m);
        Shape sa = shape_a(m, k, ta), sb = shape_b(k, n, tb);
        Tensor a = random_tensor({L, sa[0], sa[1]}, seed += 3);
        Tensor b = random_tensor({L, sb[0], sb[1]}, seed += 3);
        Tensor c = random_tensor({L, m, n}, seed += 3);
        auto ad = to_double(a), bd = to_double(b), cd = to_double(c);
        std::vector<double> want;
        for (int64_t l = 0; l < L; ++l) {
          auto part = ref_gemm(
              std::vector<double>(ad.begin() + l * m * k, ad.begin() + (l + 1) * m * k), ta,
              std::vector<double>(bd.begin() + l * k * n, bd.begin() + (l + 1) * k * n), tb,
              std::vector<double>(cd.begin() + l * m * n, cd.begin() + (l + 1) * m * n), m, n, k,
              1.5, 0.25);
          want.insert(want.end(), part.begin(), part.end());
        }
        ops::gemm_batched(a, ta, b, tb, c, 1.5f, 0.25f);
        EXPECT_TRUE(all_close(c, want, 1e-5, 1e-5));
      }
}

TEST(Gemm, MisuseThrows) {
  Tensor a = random_tensor({4, 5}, 500), b = random_tensor({6, 3}, 501);
  Tensor c = Tensor::empty({4, 3});
  EXPECT_THROW(ops::gemm(a, false, b, false, c), opd::Error);  // inner 5 vs 6
  Tensor b2 = random_tensor({5, 3}, 502);
  Tensor c_bad = Tensor::empty({4, 4});
  EXPECT_THROW(ops::gemm(a, false, b2, false, c_bad), opd::Error);
  Tensor v = random_tensor({5}, 503);
  EXPECT_THROW(ops::gemm(a, false, v, false, c), opd::Error);  // 1-d
  Tensor ai = Tensor::empty({4, 5}, DType::I32);
  EXPECT_THROW(ops::gemm(ai, false, b2, false, c), opd::Error);
  Tensor ba = random_tensor({2, 4, 5}, 504), bb = random_tensor({3, 5, 3}, 505);
  Tensor bc = Tensor::empty({2, 4, 3});
  EXPECT_THROW(ops::gemm_batched(ba, false, bb, false, bc), opd::Error);  // L 2 vs 3
  Tensor sq = random_tensor({4, 4}, 506);
  EXPECT_THROW(ops::gemm(sq, false, sq, false, sq), opd::Error);  // c aliases a
}

namespace {
// x rounded to bf16 (the mixed-precision compute copy) and its exact f32 widening.
std::pair<Tensor, Tensor> rounded(const Tensor& x) {
  Tensor h = Tensor::empty(x.shape(), DType::BF16), back = Tensor::empty(x.shape());
  ops::cast(x, h);
  ops::cast(h, back);
  return {h, back};
}
}  // namespace

TEST(Gemm, Bf16OperandsAccumulateInF32) {
  // The product of the bf16 operands must be that of their exact f32 values (each bf16 product
  // is exact in f32), whatever the transposes, through sgemm and sgemv alike.
  uint64_t seed = 600;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{9, 7, 33}, {1, 17, 8}, {12, 1, 8}}) {
        SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n);
        auto [a, a32] = rounded(random_tensor(shape_a(m, k, ta), seed += 3));
        auto [b, b32] = rounded(random_tensor(shape_b(k, n, tb), seed += 3));
        Tensor c = random_tensor({m, n}, seed += 3);
        auto want = ref_gemm(to_double(a32), ta, to_double(b32), tb, to_double(c), m, n, k, 0.5, 1.0);
        ops::gemm(a, ta, b, tb, c, 0.5f, 1.0f);
        EXPECT_TRUE(all_close(c, want, 1e-5, 1e-6));
      }
}

TEST(Gemm, MixedOperandDtypesAreRefused) {
  auto [a, a32] = rounded(random_tensor({4, 5}, 700));
  Tensor b = random_tensor({5, 3}, 701), c = Tensor::empty({4, 3});
  EXPECT_THROW(ops::gemm(a, false, b, false, c), opd::Error);
  Tensor c16 = Tensor::empty({4, 3}, DType::BF16);
  auto [b16, b32] = rounded(b);
  EXPECT_THROW(ops::gemm(a, false, b16, false, c16), opd::Error);  // the result is f32
}

TEST(Cast, RoundsLikeTheScalarConversionAndWidensExactly) {
  Tensor x = random_tensor({1000}, 800);
  x.data<float>()[0] = std::numeric_limits<float>::infinity();
  x.data<float>()[1] = 1.0f + std::ldexp(1.0f, -8);  // a tie: to even
  auto [h, back] = rounded(x);
  const float* xs = x.data<float>();
  const uint16_t* hs = h.data<uint16_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    ASSERT_EQ(hs[i], opd::core::float_to_bf16(xs[i])) << i;
    ASSERT_EQ(back.data<float>()[i], opd::core::bf16_to_float(hs[i])) << i;
  }
  EXPECT_EQ(hs[1], 0x3F80);
  Tensor wrong = Tensor::empty({999}, DType::BF16);
  EXPECT_THROW(ops::cast(x, wrong), opd::Error);
  Tensor i32 = Tensor::empty({1000}, DType::I32);
  EXPECT_THROW(ops::cast(x, i32), opd::Error);
}
