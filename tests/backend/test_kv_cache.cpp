// scatter_rows: new key/value rows land at their absolute positions; other rows are untouched.
#include <gtest/gtest.h>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

using opd::core::Tensor;

TEST(KvCache, ScatterRowsPlacesEachRowAtItsPosition) {
  const int64_t B = 3, T = 2, R = 5, S = 7;
  Tensor src = opd::testing::random_tensor({B, T, R}, 1);
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{0, 1, 4, 5, 6, 2}, {B, T});
  Tensor dst = opd::testing::random_tensor({B, S, R}, 2);
  const std::vector<float> before = dst.to_vector();
  opd::backend::scatter_rows(src, pos, dst);
  std::vector<float> want = before;
  const auto s = src.to_vector();
  const auto p = pos.to_vector_i32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < R; ++r)
        want[static_cast<std::size_t>((b * S + p[static_cast<std::size_t>(b * T + t)]) * R + r)] =
            s[static_cast<std::size_t>((b * T + t) * R + r)];
  EXPECT_EQ(dst.to_vector(), want);  // a copy: bit-exact
}

TEST(KvCache, PositionOutsideTheCacheIsRefused) {
  Tensor src = Tensor::zeros({1, 1, 2});
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{3}, {1, 1});
  Tensor dst = Tensor::zeros({1, 3, 2});
  EXPECT_THROW(opd::backend::scatter_rows(src, pos, dst), opd::Error);
}
