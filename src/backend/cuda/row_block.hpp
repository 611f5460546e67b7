// What the per-row kernels of the CUDA distillation ops share: the OPD_ROW marker, NaN/inf-safe
// scalar helpers and the top-k order key. The row code (row_select.hpp and the *_row.hpp files)
// is written once against a "block" policy and compiled two ways: by nvcc as device code run by
// one CUDA block per row (cuda_block.cuh), and by the host compiler for a test that runs the same
// code with emulated threads (tests/backend/test_cuda_distill_rows.cpp), since the kernels must
// be checkable on machines without a GPU.
//
// A block policy `Blk` offers, every call made by all of its threads in the same order:
//   int tid(), size()                      this thread's index and the thread count
//   void sync()                            a barrier; global-memory writes before it are visible
//   double sum(double), max(double)        block-wide, every thread gets the same value; max
//                                          ignores NaN (as std::max(m, x) with m first)
//   uint64_t max_u64(uint64_t)
//   void sum16(double m[16], int c[16])    sixteen sums of each at once, in place
//   int scan(int v, int& total)            exclusive prefix sum over thread indices
//   T* shared<T>()                         one block-shared object (<= 256 bytes) for broadcasts
// Every reduction combines the threads in a fixed order, so results are run-to-run identical.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define OPD_ROW __device__ inline
#define OPD_ROW_HOST __host__ __device__ inline
#define OPD_UNROLL _Pragma("unroll")
#else
#define OPD_ROW inline
#define OPD_ROW_HOST inline
#define OPD_UNROLL
#endif

namespace opd::backend::cuda::rows {

constexpr double kInf = double(INFINITY);
constexpr double kNaN = double(NAN);
constexpr int kSharedBytes = 256;

OPD_ROW bool is_nan(double x) { return x != x; }
OPD_ROW bool is_finite(double x) { return x == x && x != kInf && x != -kInf; }
OPD_ROW double dmax(double a, double b) { return a < b ? b : a; }  // std::max(a, b)
OPD_ROW double dmin(double a, double b) { return b < a ? b : a; }  // std::min(a, b)
OPD_ROW int64_t imin(int64_t a, int64_t b) { return b < a ? b : a; }

// Larger value first, ties to the lower id, NaN ranked as -inf (the CPU backend's "before"
// order) as one unsigned number per element: the value's bits made order-preserving in the high
// word (-0 counted as +0, which compare equal), the id's complement in the low word. Distinct ids
// give distinct keys; a larger key comes first. Ids must be < 2^31.
OPD_ROW float rank_value(float v) { return v != v ? -float(INFINITY) : v; }

OPD_ROW uint32_t float_bits(float v) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(v);
#else
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
#endif
}

OPD_ROW uint64_t order_key(float v, int64_t id) {
  v = rank_value(v);
  if (v == 0.0f) v = 0.0f;
  uint32_t b = float_bits(v);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (uint64_t(b) << 32) | uint64_t(0xFFFFFFFFu - uint32_t(id));
}
OPD_ROW int32_t key_id(uint64_t key) { return int32_t(0xFFFFFFFFu - uint32_t(key & 0xFFFFFFFFu)); }

// x * (la - lb) with 0 * anything = 0 (no NaN from 0 * log 0).
OPD_ROW double xdiff(double x, double la, double lb) { return x > 0.0 ? x * (la - lb) : 0.0; }

// log(exp(a) + exp(b)) for a, b possibly -inf.
OPD_ROW double log_add(double a, double b) {
  const double m = dmax(a, b);
  if (m == -kInf) return -kInf;
  return m + log(exp(a - m) + exp(b - m));
}

// log sum exp of x[0, n) in double with the max shifted out; -inf (or the non-finite max) for
// an empty or fully masked list (serial: one thread).
OPD_ROW double lse_list(const double* x, int64_t n) {
  double m = -kInf;
  for (int64_t j = 0; j < n; ++j) m = dmax(m, x[j]);
  if (!is_finite(m)) return m;
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) s += exp(x[j] - m);
  return m + log(s);
}

// Whether ids[0, k) holds v (serial).
OPD_ROW bool contains(const int32_t* ids, int64_t k, int64_t v) {
  for (int64_t i = 0; i < k; ++i)
    if (ids[i] == v) return true;
  return false;
}

// Whether the ascending a[0, n) holds v (binary search).
OPD_ROW bool sorted_contains(const int32_t* a, int64_t n, int64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && a[lo] == v;
}

// The value carried for `id` in a row's (ids, values) list; NaN when it is not carried.
OPD_ROW double carried(const int32_t* ids, const double* values, int64_t k, int64_t id) {
  for (int64_t c = 0; c < k; ++c)
    if (ids[c] == id) return values[c];
  return kNaN;
}

}  // namespace opd::backend::cuda::rows
