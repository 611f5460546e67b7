// The order-fixed reductions of backend/cuda/ordered_sums.cuh (the RMSNorm gain gradient, the
// global gradient norm, the embedding gradient of repeated ids), compiled as C++ and run on the
// SIMT emulator as norms.cu, elementwise.cu and embedding.cu launch them, against plain sums and
// the CPU backend; the embedding gradient equals the CPU backend's bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/ops.hpp"
#include "testing/reference.hpp"

// clang-format off
#include "backend/simt_emulator.hpp"
#include "backend/cuda/ordered_sums.cuh"
// clang-format on

namespace ord = opd::backend::cuda::ordered;
namespace ops = opd::backend;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

dim3 grid(int64_t x, int64_t y = 1) {
  return dim3{static_cast<unsigned>(x), static_cast<unsigned>(y), 1};
}

struct GainTerm {
  const float *dy, *x, *rstd;
  int64_t d;
  double operator()(int64_t r, int64_t j) const {
    return static_cast<double>(dy[r * d + j] * x[r * d + j] * rstd[r]);
  }
};

}  // namespace

// norms.cu's add_column_sums: chunks of 64 rows (the last one short), columns past a block.
TEST(OrderedSumsEmulated, ColumnSumsAreTheRmsnormGainGradient) {
  const int64_t n = 300, d = 300;
  const Tensor x = random_tensor({n, d}, 1), w = random_tensor({d}, 2, 0.5f, 1.5f);
  const Tensor dy = random_tensor({n, d}, 3);
  Tensor y = Tensor::empty({n, d}), rstd = Tensor::empty({n}), dx = Tensor::empty({n, d});
  ops::rmsnorm_forward(x, w, 1e-5f, y, &rstd);
  Tensor dw = Tensor::from_vector(std::vector<float>(d, 0.25f), {d});
  ops::rmsnorm_backward(x, w, rstd, dy, dx, dw);  // the CPU backend: 0.25 + the gradient

  const int64_t chunks = (n + 63) / 64, rows_per = (n + chunks - 1) / chunks;
  std::vector<double> partial(static_cast<std::size_t>(chunks * d), std::nan(""));
  std::vector<float> out(static_cast<std::size_t>(d), 0.25f);
  const GainTerm term{dy.data<float>(), x.data<float>(), rstd.data<float>(), d};
  const int64_t cols = (d + ord::kThreads - 1) / ord::kThreads;
  simt::launch(grid(cols, chunks), ord::kThreads, 0,
               [&] { ord::column_partials(term, n, d, rows_per, partial.data()); });
  simt::launch(grid(cols), ord::kThreads, 0,
               [&] { ord::column_finish(partial.data(), chunks, d, out.data()); });
  std::vector<double> want(static_cast<std::size_t>(d), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < d; ++j) want[std::size_t(j)] += term(r, j);
  for (double& v : want) v += 0.25;
  EXPECT_TRUE(all_close(std::vector<double>(out.begin(), out.end()), want, 1e-6, 1e-7));
  EXPECT_TRUE(all_close(std::vector<double>(out.begin(), out.end()), to_double(dw), 1e-6, 1e-7));
}

// elementwise.cu's sum_squares: block partials, then one block.
TEST(OrderedSumsEmulated, SumOfSquaresInTwoPasses) {
  const int64_t n = 70001;
  const Tensor x = random_tensor({n}, 4);
  const int blocks = 137;  // any grid: the result must not depend on it beyond rounding
  std::vector<double> partial(blocks + 1, std::nan(""));
  simt::launch(grid(blocks), ord::kThreads, 0,
               [&] { ord::square_partials(x.data<float>(), n, partial.data() + 1); });
  simt::launch(grid(1), ord::kThreads, 0,
               [&] { ord::sum_partials(partial.data() + 1, blocks, partial.data()); });
  double want = 0.0;
  for (float v : x.to_vector()) want += static_cast<double>(v) * v;
  EXPECT_NEAR(partial[0], want, 1e-12 * want);
  EXPECT_NEAR(partial[0], ops::sum_squares(x), 1e-12 * want);
}

// embedding.cu's backward: positions grouped by id on the host, one block per id adding in
// position order: the CPU backend's bits, ids outside the shard ignored.
TEST(OrderedSumsEmulated, EmbeddingGradientEqualsTheCpuBitForBit) {
  const int64_t d = 300, first = 10, rows = 20;
  const std::vector<int32_t> ids = {12, 15, 12, 3, 29, 12, 40, 15, 10, 29, 29, 11, 12, 30, 9};
  const auto n = static_cast<int64_t>(ids.size());
  const Tensor grad = random_tensor({n, d}, 5);
  const Tensor table0 = random_tensor({rows, d}, 6);
  Tensor cpu = Tensor::from_vector(table0.to_vector(), {rows, d});
  ops::embedding_backward(grad, Tensor::from_vector(ids, {n}), cpu, {first, 100});

  const ord::Segments seg = ord::segments_of(ids, first, rows);
  EXPECT_EQ(seg.row, (std::vector<int32_t>{0, 1, 2, 5, 19}));
  EXPECT_EQ(seg.begin, (std::vector<int32_t>{0, 1, 2, 6, 8, 11}));
  std::vector<float> table = table0.to_vector();
  simt::launch(grid(static_cast<int64_t>(seg.row.size())), ord::kThreads, 0, [&] {
    ord::add_segments(grad.data<float>(), seg.order.data(), seg.begin.data(), seg.row.data(), d,
                      table.data());
  });
  EXPECT_EQ(table, cpu.to_vector());
  EXPECT_NE(table, table0.to_vector());
}
