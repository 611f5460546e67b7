// Sums whose order of additions is fixed by the data layout, never by thread scheduling, so that
// a GPU run gives the same bits every time (a resume is bit-exact, as on the CPU). They replace
// float atomics in the three reductions across rows: the RMSNorm gain gradient, the global
// gradient norm and the embedding gradient of repeated ids.
//   column sums: block (x, c) gives each thread a column j and sums rows [c R, (c + 1) R) in
//     order into partial[c][j] (double); a second kernel adds the chunks in order.
//   sum of squares: each block's grid-stride share, reduced by a fixed tree, into partial[b];
//     one block then adds the partials by the same fixed pattern.
//   segments: the positions of one id (grouped on the host, in position order) summed by one
//     block, a thread per column, and added to the id's row once.
// Plain device code without runtime calls: tests/backend/test_cuda_ordered_sums.cpp runs it on
// the SIMT emulator.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#ifndef OPD_ATTN_KERNEL_NS
#define OPD_ATTN_KERNEL_NS device_code
#endif

namespace opd::backend::cuda::ordered {
inline namespace OPD_ATTN_KERNEL_NS {
// Internal linkage: several .cu files include these kernels, each launches its own copy.
namespace {

constexpr int kThreads = 256;  // every kernel here: a power of two (the tree reductions)

// partial[c d + j] = sum_{r in chunk c} term(r, j), rows in order; grid (ceil(d / kThreads),
// chunks), chunk c = rows [c rows_per, min(n, (c + 1) rows_per)).
template <class Term>
__global__ void column_partials(Term term, int64_t n, int64_t d, int64_t rows_per,
                                double* partial) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= d) return;
  const int64_t c = blockIdx.y, begin = c * rows_per;
  const int64_t end = begin + rows_per < n ? begin + rows_per : n;
  double s = 0.0;
  for (int64_t r = begin; r < end; ++r) s += term(r, j);
  partial[c * d + j] = s;
}

// out[j] += sum_c partial[c d + j], chunks in order.
__global__ void column_finish(const double* partial, int64_t chunks, int64_t d, float* out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= d) return;
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c * d + j];
  out[j] += static_cast<float>(s);
}

// The block's values reduced by a fixed tree; thread 0 gets the sum. Ends with a barrier.
__device__ __forceinline__ double tree_sum(double v, double* part) {
  part[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) part[threadIdx.x] += part[threadIdx.x + stride];
    __syncthreads();
  }
  const double total = part[0];
  __syncthreads();
  return total;
}

// partial[b] = sum of x[i]^2 over block b's grid-stride share.
__global__ void square_partials(const float* x, int64_t n, double* partial) {
  __shared__ double part[kThreads];
  double s = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const double v = x[i];
    s += v * v;
  }
  const double total = tree_sum(s, part);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// *out = sum of partial[0 .. m): one block.
__global__ void sum_partials(const double* partial, int64_t m, double* out) {
  __shared__ double part[kThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += kThreads) s += partial[i];
  const double total = tree_sum(s, part);
  if (threadIdx.x == 0) *out = total;
}

// The positions of ids in [first, first + rows) grouped by id for add_segments: order lists them
// by (id, position), segment s is order[begin[s] .. begin[s + 1]) and adds into row[s].
struct Segments {
  std::vector<int32_t> order, begin, row;
};
inline Segments segments_of(const std::vector<int32_t>& id, int64_t first, int64_t rows) {
  Segments s;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const int64_t r = static_cast<int64_t>(id[i]) - first;
    if (r >= 0 && r < rows) s.order.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(s.order.begin(), s.order.end(),
                   [&](int32_t a, int32_t b) { return id[std::size_t(a)] < id[std::size_t(b)]; });
  for (std::size_t k = 0; k < s.order.size(); ++k) {
    const int32_t at = id[std::size_t(s.order[k])];
    if (k == 0 || at != id[std::size_t(s.order[k - 1])]) {
      s.begin.push_back(static_cast<int32_t>(k));
      s.row.push_back(static_cast<int32_t>(at - first));
    }
  }
  s.begin.push_back(static_cast<int32_t>(s.order.size()));
  return s;
}

// Segment s (one block): table[row[s] d + j] += grad[order[k] d + j] for k in [begin[s],
// begin[s + 1]) one after the other, the CPU backend's order, so the bits are the CPU's too.
__global__ void add_segments(const float* grad, const int32_t* order, const int32_t* begin,
                             const int32_t* row, int64_t d, float* table) {
  const int64_t s = blockIdx.x;
  const int32_t k0 = begin[s], k1 = begin[s + 1];
  float* dst = table + static_cast<int64_t>(row[s]) * d;
  for (int64_t j = threadIdx.x; j < d; j += kThreads) {
    float t = dst[j];
    for (int32_t k = k0; k < k1; ++k) t += grad[static_cast<int64_t>(order[k]) * d + j];
    dst[j] = t;
  }
}

}  // namespace
}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::ordered
