// gather_cols: out[n, i] = x[n, ids[n, i]] against a plain loop; bad ids and shapes are refused.
#include <gtest/gtest.h>

#include <vector>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace {

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::testing;
namespace ops = opd::backend;

TEST(GatherCols, MatchesReference) {
  const int64_t N = 5, V = 11, K = 4;
  Tensor x = random_tensor({N, V}, 7);
  Tensor ids = random_ids({N, K}, static_cast<int32_t>(V), 8);  // repeats allowed
  Tensor out = Tensor::empty({N, K});
  ops::gather_cols(x, ids, out);
  const std::vector<float> xv = x.to_vector();
  const std::vector<int32_t> iv = ids.to_vector_i32();
  const std::vector<float> ov = out.to_vector();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < K; ++i)
      EXPECT_EQ(ov[n * K + i], xv[n * V + iv[n * K + i]]) << "n " << n << " i " << i;
}

TEST(GatherCols, HandValuesAndEdgeIds) {
  Tensor x = Tensor::from_vector(std::vector<float>{0.f, 1.f, 2.f, 10.f, 11.f, 12.f}, {2, 3});
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{2, 0, 0, 0, 1, 2}, {2, 3});
  Tensor out = Tensor::empty({2, 3});
  ops::gather_cols(x, ids, out);
  EXPECT_EQ(out.to_vector(), (std::vector<float>{2.f, 0.f, 0.f, 10.f, 11.f, 12.f}));
}

TEST(GatherCols, RefusesBadIdsAndShapes) {
  Tensor x = random_tensor({2, 5}, 1);
  Tensor out = Tensor::empty({2, 2});
  Tensor too_big = Tensor::from_vector(std::vector<int32_t>{0, 1, 5, 2}, {2, 2});
  Tensor negative = Tensor::from_vector(std::vector<int32_t>{0, -1, 3, 2}, {2, 2});
  EXPECT_THROW(ops::gather_cols(x, too_big, out), opd::Error);
  EXPECT_THROW(ops::gather_cols(x, negative, out), opd::Error);
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{0, 1, 4, 2}, {2, 2});
  Tensor out_bad = Tensor::empty({2, 3});
  EXPECT_THROW(ops::gather_cols(x, ids, out_bad), opd::Error);
  Tensor ids_rows = Tensor::from_vector(std::vector<int32_t>{0, 1}, {1, 2});
  EXPECT_THROW(ops::gather_cols(x, ids_rows, out), opd::Error);
  Tensor ids_f32 = Tensor::empty({2, 2});
  EXPECT_THROW(ops::gather_cols(x, ids_f32, out), opd::Error);
}

}  // namespace
