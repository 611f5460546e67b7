// Row-wise vocabulary ops (log_softmax_rows, logsumexp_rows, entropy_rows, topk_rows) against
// plain float64 references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace {

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::testing;
namespace ops = opd::backend;

constexpr float kInf = std::numeric_limits<float>::infinity();

struct RefRows {
  std::vector<double> log_softmax, lse, entropy;
};

RefRows reference(const std::vector<double>& x, int64_t N, int64_t V) {
  RefRows r;
  for (int64_t n = 0; n < N; ++n) {
    const double* row = x.data() + n * V;
    double m = *std::max_element(row, row + V);
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(row[j] - m);
    double lse = m + std::log(s);
    double h = 0;
    for (int64_t j = 0; j < V; ++j) {
      double lp = row[j] - lse;
      r.log_softmax.push_back(lp);
      h -= std::exp(lp) * lp;
    }
    r.lse.push_back(lse);
    r.entropy.push_back(h);
  }
  return r;
}

TEST(VocabRows, SoftmaxFamilyMatchesReference) {
  const int64_t N = 7, V = 13;
  Tensor x = random_tensor({N, V}, 11, -5.0f, 5.0f);
  RefRows ref = reference(to_double(x), N, V);

  Tensor ls = Tensor::empty({N, V}), lse = Tensor::empty({N}), ent = Tensor::empty({N});
  ops::log_softmax_rows(x, ls);
  ops::logsumexp_rows(x, lse);
  ops::entropy_rows(x, ent);
  EXPECT_TRUE(all_close(ls, ref.log_softmax, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(lse, ref.lse, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(ent, ref.entropy, 1e-5, 1e-6));
}

TEST(VocabRows, LargeLogitsAreStable) {
  // Logits around 1000: exp would overflow without the max shift.
  const int64_t N = 3, V = 50;
  Tensor x = random_tensor({N, V}, 5, -3.0f, 3.0f);
  float* p = x.data<float>();
  for (int64_t i = 0; i < N * V; ++i) p[i] += 1000.0f;
  RefRows ref = reference(to_double(x), N, V);  // float64 reference of the shifted floats
  Tensor ls = Tensor::empty({N, V}), lse = Tensor::empty({N}), ent = Tensor::empty({N});
  ops::log_softmax_rows(x, ls);
  ops::logsumexp_rows(x, lse);
  ops::entropy_rows(x, ent);
  EXPECT_TRUE(all_close(ls, ref.log_softmax, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(lse, ref.lse, 1e-7, 1e-6));
  EXPECT_TRUE(all_close(ent, ref.entropy, 1e-5, 1e-6));
  for (int64_t n = 0; n < N; ++n) EXPECT_GT(lse.data<float>()[n], 1000.0f);
}

TEST(VocabRows, HandComputedValues) {
  // Row 0: uniform over 4 -> lse = log 4, entropy = log 4, log-softmax = -log 4.
  // Row 1: probabilities (0.5, 0.25, 0.125, 0.125) -> entropy = 1.75 log 2.
  Tensor x = Tensor::from_vector(
      std::vector<float>{0.f, 0.f, 0.f, 0.f, std::log(4.f), std::log(2.f), 0.f, 0.f}, {2, 4});
  Tensor ls = Tensor::empty({2, 4}), lse = Tensor::empty({2}), ent = Tensor::empty({2});
  ops::log_softmax_rows(x, ls);
  ops::logsumexp_rows(x, lse);
  ops::entropy_rows(x, ent);
  EXPECT_NEAR(lse.data<float>()[0], std::log(4.0), 1e-6);
  EXPECT_NEAR(lse.data<float>()[1], std::log(8.0), 1e-6);
  EXPECT_NEAR(ent.data<float>()[0], std::log(4.0), 1e-6);
  EXPECT_NEAR(ent.data<float>()[1], 1.75 * std::log(2.0), 1e-6);
  EXPECT_NEAR(ls.data<float>()[0], -std::log(4.0), 1e-6);
  EXPECT_NEAR(ls.data<float>()[4], std::log(0.5), 1e-6);
  EXPECT_NEAR(ls.data<float>()[7], std::log(0.125), 1e-6);
}

TEST(VocabRows, MaskedEntriesContributeNothing) {
  // -inf logits are masked tokens: the row behaves like the row without them.
  Tensor x = Tensor::from_vector(std::vector<float>{1.f, -kInf, 2.f, -kInf, 0.5f}, {1, 5});
  Tensor y = Tensor::from_vector(std::vector<float>{1.f, 2.f, 0.5f}, {1, 3});
  Tensor lx = Tensor::empty({1}), ly = Tensor::empty({1}), ex = Tensor::empty({1}),
         ey = Tensor::empty({1}), lsx = Tensor::empty({1, 5});
  ops::logsumexp_rows(x, lx);
  ops::logsumexp_rows(y, ly);
  ops::entropy_rows(x, ex);
  ops::entropy_rows(y, ey);
  ops::log_softmax_rows(x, lsx);
  EXPECT_FLOAT_EQ(lx.data<float>()[0], ly.data<float>()[0]);
  EXPECT_TRUE(std::isfinite(ex.data<float>()[0]));
  EXPECT_FLOAT_EQ(ex.data<float>()[0], ey.data<float>()[0]);
  EXPECT_EQ(lsx.data<float>()[1], -kInf);
  EXPECT_NEAR(lsx.data<float>()[2], 2.0 - ly.data<float>()[0], 1e-6);
}

TEST(VocabRows, LogSoftmaxInPlace) {
  Tensor x = random_tensor({4, 9}, 3);
  RefRows ref = reference(to_double(x), 4, 9);
  ops::log_softmax_rows(x, x);
  EXPECT_TRUE(all_close(x, ref.log_softmax, 1e-6, 1e-6));
}

// Reference top-k: stable sort by value descending keeps lower ids first among ties.
void reference_topk(const std::vector<double>& x, int64_t N, int64_t V, int k,
                    std::vector<double>& vals, std::vector<double>& ids) {
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return x[n * V + a] > x[n * V + b]; });
    for (int j = 0; j < k; ++j) {
      vals.push_back(x[n * V + order[j]]);
      ids.push_back(order[j]);
    }
  }
}

TEST(VocabRows, TopkMatchesReferenceWithTies) {
  const int64_t N = 6, V = 40;
  // Integer-valued logits in a small range: many ties.
  Tensor x = random_tensor({N, V}, 21, -4.0f, 4.0f);
  for (int64_t i = 0; i < N * V; ++i) x.data<float>()[i] = std::floor(x.data<float>()[i]);
  std::vector<double> xd = to_double(x);
  for (int k : {1, 3, 17, 40}) {
    std::vector<double> rv, ri;
    reference_topk(xd, N, V, k, rv, ri);
    Tensor vals = Tensor::empty({N, k}), ids = Tensor::empty({N, k}, DType::I32);
    ops::topk_rows(x, k, vals, ids);
    EXPECT_EQ(to_double(vals), rv) << "k = " << k;
    EXPECT_EQ(to_double(ids), ri) << "k = " << k;
  }
}

TEST(VocabRows, TopkHandComputed) {
  Tensor x = Tensor::from_vector(std::vector<float>{0.5f, 2.0f, -1.0f, 2.0f, 3.0f, 0.5f}, {1, 6});
  Tensor vals = Tensor::empty({1, 4}), ids = Tensor::empty({1, 4}, DType::I32);
  ops::topk_rows(x, 4, vals, ids);
  EXPECT_EQ(ids.to_vector_i32(), (std::vector<int32_t>{4, 1, 3, 0}));
  EXPECT_EQ(vals.to_vector(), (std::vector<float>{3.0f, 2.0f, 2.0f, 0.5f}));
}

TEST(VocabRows, MisuseThrows) {
  Tensor x = random_tensor({3, 5}, 1);
  Tensor bad_n = Tensor::empty({4});
  Tensor bad_ls = Tensor::empty({3, 6});
  EXPECT_THROW(ops::logsumexp_rows(x, bad_n), opd::Error);
  EXPECT_THROW(ops::entropy_rows(x, bad_n), opd::Error);
  EXPECT_THROW(ops::log_softmax_rows(x, bad_ls), opd::Error);
  Tensor x1 = random_tensor({15}, 1);  // not [N, V]
  Tensor out3 = Tensor::empty({3});
  EXPECT_THROW(ops::logsumexp_rows(x1, out3), opd::Error);
  Tensor xi = Tensor::zeros({3, 5}, DType::I32);
  EXPECT_THROW(ops::logsumexp_rows(xi, out3), opd::Error);

  Tensor v6 = Tensor::empty({3, 6}), i6 = Tensor::empty({3, 6}, DType::I32);
  EXPECT_THROW(ops::topk_rows(x, 6, v6, i6), opd::Error);  // k > V
  Tensor v0 = Tensor::empty({3, 0}), i0 = Tensor::empty({3, 0}, DType::I32);
  EXPECT_THROW(ops::topk_rows(x, 0, v0, i0), opd::Error);
  Tensor v2 = Tensor::empty({3, 2}), i2f = Tensor::empty({3, 2});  // ids must be I32
  EXPECT_THROW(ops::topk_rows(x, 2, v2, i2f), opd::Error);
  Tensor i3 = Tensor::empty({3, 3}, DType::I32);
  EXPECT_THROW(ops::topk_rows(x, 2, v2, i3), opd::Error);
}

}  // namespace
