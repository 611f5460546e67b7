// backend embedding forward (gather) and backward (scatter-add), against float64 loops and
// finite differences; out-of-range ids fail.
#include <gtest/gtest.h>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::DType;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::random_ids;
using opd::testing::random_tensor;
using opd::testing::to_double;

TEST(Embedding, ForwardGathersRows) {
  const int64_t V = 11, D = 6;
  Tensor table = random_tensor({V, D}, 1);
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, 0, 10, 3, 7, 7}, {2, 3});
  Tensor out = Tensor::empty({2, 3, D});
  ops::embedding_forward(table, ids, out);
  auto t = table.to_vector();
  std::vector<float> want;
  for (int32_t id : ids.to_vector_i32())
    for (int64_t j = 0; j < D; ++j) want.push_back(t[id * D + j]);
  EXPECT_EQ(out.to_vector(), want);  // a copy is exact
}

TEST(Embedding, BackwardAccumulatesRepeatedIds) {
  // 600 columns: more than one column block of the race-free backward.
  const int64_t V = 9, D = 600, N = 40;
  Tensor ids = random_ids({N}, static_cast<int32_t>(V), 2);  // many repeats
  Tensor d_out = random_tensor({N, D}, 3);
  Tensor d_table = random_tensor({V, D}, 4);
  auto want = to_double(d_table);
  auto g = to_double(d_out);
  auto idv = ids.to_vector_i32();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < D; ++j) want[idv[n] * D + j] += g[n * D + j];
  ops::embedding_backward(d_out, ids, d_table);
  EXPECT_TRUE(all_close(d_table, want, 1e-6, 1e-6));
}

TEST(Embedding, BackwardMatchesFiniteDifferences) {
  const int64_t V = 6, D = 5, N = 8;
  Tensor ids = random_ids({N}, static_cast<int32_t>(V), 5);
  Tensor table = random_tensor({V, D}, 6);
  Tensor w = random_tensor({N, D}, 7);
  auto idv = ids.to_vector_i32();
  auto wd = to_double(w);
  auto loss = [&](const std::vector<double>& t) {
    double l = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < D; ++j) l += wd[n * D + j] * t[idv[n] * D + j];
    return l;
  };
  auto fd = opd::testing::finite_difference(loss, to_double(table));
  Tensor d_table = Tensor::zeros({V, D});
  ops::embedding_backward(w, ids, d_table);
  EXPECT_TRUE(all_close(d_table, fd, 1e-4, 1e-6));
}

TEST(Embedding, MisuseThrows) {
  Tensor table = random_tensor({4, 3}, 8);
  Tensor out = Tensor::empty({2, 3});
  Tensor too_big = Tensor::from_vector(std::vector<int32_t>{1, 4}, {2});
  Tensor negative = Tensor::from_vector(std::vector<int32_t>{-1, 0}, {2});
  EXPECT_THROW(ops::embedding_forward(table, too_big, out), opd::Error);
  EXPECT_THROW(ops::embedding_forward(table, negative, out), opd::Error);
  Tensor d_table = Tensor::zeros({4, 3});
  EXPECT_THROW(ops::embedding_backward(out, too_big, d_table), opd::Error);
  for (float v : d_table.to_vector()) EXPECT_EQ(v, 0.0f);  // nothing written before the check
  Tensor ok = Tensor::from_vector(std::vector<int32_t>{1, 2}, {2});
  Tensor wrong_d = Tensor::empty({2, 4});
  EXPECT_THROW(ops::embedding_forward(table, ok, wrong_d), opd::Error);
  Tensor wrong_n = Tensor::empty({3, 3});
  EXPECT_THROW(ops::embedding_forward(table, ok, wrong_n), opd::Error);
  Tensor float_ids = Tensor::zeros({2});
  EXPECT_THROW(ops::embedding_forward(table, float_ids, out), opd::Error);
}
