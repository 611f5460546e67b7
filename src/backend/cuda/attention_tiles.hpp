// The tile bookkeeping of the flash attention kernels (attention_forward.cu,
// attention_backward.cu), host- and device-callable so that tests/backend/test_cuda_attention.cpp
// can run the same arithmetic on the CPU: which keys a query sees, how the query rows of one kv
// head are numbered, which key tiles a block visits, how a decode step's keys are split over
// blocks, and the online-softmax and split-combine steps.
//
// Rows of a problem (b, g): the T * rep query rows (t, r) of the rep = H / G query heads that read
// kv head g, numbered n = t * rep + r (t-major), so that a tile of rows shares its key tiles across
// the heads of the group (one K/V tile load serves them all; a decode step has rep rows, not 1).
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define OPD_HD __host__ __device__
#else
#define OPD_HD
#endif

namespace opd::backend::cuda::attn {

// Problem dimensions: q [B, T, H, E], k and v [B, S, G, E], q_pos [B, T], lse [B, H, T].
struct Shape {
  int B, T, H, G, E, S;
  OPD_HD int rep() const { return H / G; }
  OPD_HD int rows() const { return T * (H / G); }  // query rows of one (b, g)
};

// Tiles per head-dimension bound kE (E <= kE, padded with zeros): forward rows x keys, the dK/dV
// kernel's query rows x keys, the dQ kernel's rows x keys. Chosen so that accumulators stay at
// <= 64 registers a thread and shared memory at most ~150 KB (two blocks a multiprocessor
// where it fits). All multiples of 16 (the kernels' 16 x 16 thread grid).
template <int kE>
struct Config;
template <>
struct Config<32> {
  static constexpr int kFwdBr = 64, kFwdBc = 64, kBwdBr = 32, kBwdBc = 64, kDqBr = 64, kDqBc = 64;
};
template <>
struct Config<64> {
  static constexpr int kFwdBr = 64, kFwdBc = 64, kBwdBr = 32, kBwdBc = 64, kDqBr = 64, kDqBc = 64;
};
template <>
struct Config<128> {
  static constexpr int kFwdBr = 64, kFwdBc = 64, kBwdBr = 16, kBwdBc = 64, kDqBr = 64, kDqBc = 32;
};
template <>
struct Config<256> {
  static constexpr int kFwdBr = 64, kFwdBc = 32, kBwdBr = 16, kBwdBc = 32, kDqBr = 32, kDqBc = 32;
};
// Row tile of a forward with few rows (a decode step: T * rep <= 16).
constexpr int kDecodeBr = 16;
constexpr int kMaxHeadDim = 256;

// The instantiated bound for head dimension E (1 <= E <= kMaxHeadDim).
inline int head_dim_bound(int E) { return E <= 32 ? 32 : E <= 64 ? 64 : E <= 128 ? 128 : 256; }

// Keys 0 .. visible - 1 are seen by a query at position pos.
OPD_HD inline int visible_keys(int32_t pos, int S) {
  const int64_t v = static_cast<int64_t>(pos) + 1;
  return v < 0 ? 0 : (v > S ? S : static_cast<int>(v));
}

OPD_HD inline int ceil_div(int n, int d) { return (n + d - 1) / d; }

// Row n of problem (b, g) is query position t, query head h.
struct Row {
  int t, h;
};
OPD_HD inline Row row_of(const Shape& s, int g, int n) {
  const int rep = s.rep();
  return {n / rep, g * rep + n % rep};
}

// Element offsets of the rows of each tensor.
OPD_HD inline int64_t q_offset(const Shape& s, int b, int t, int h) {
  return ((static_cast<int64_t>(b) * s.T + t) * s.H + h) * s.E;
}
OPD_HD inline int64_t kv_offset(const Shape& s, int b, int j, int g) {
  return ((static_cast<int64_t>(b) * s.S + j) * s.G + g) * s.E;
}
OPD_HD inline int64_t lse_offset(const Shape& s, int b, int h, int t) {
  return (static_cast<int64_t>(b) * s.H + h) * s.T + t;
}

// Key tiles [begin, end) that split `split` of `splits` visits for a row tile seeing kv_end keys.
// Every row tile uses the same partition of the largest range (max_tiles = ceil(S / Bc)), so
// split k always means the same keys; a split past the tile's last visible key gets no tiles.
struct TileRange {
  int begin, end;
};
OPD_HD inline TileRange split_tiles(int kv_end, int bc, int max_tiles, int splits, int split) {
  const int per = ceil_div(max_tiles, splits);
  const int tiles = ceil_div(kv_end, bc);
  const int begin = split * per;
  int end = begin + per;
  if (end > tiles) end = tiles;
  return {begin, end < begin ? begin : end};
}

// Splits of the keys for a launch of `blocks` blocks (without splitting) over max_tiles key
// tiles, on a device of `sms` multiprocessors: enough to give about two blocks per
// multiprocessor, never an empty split, never more than the tiles. 1 when the launch already
// fills the device (training shapes), many for a decode step of a small batch (flash-decoding).
inline int plan_splits(int64_t blocks, int max_tiles, int sms) {
  if (max_tiles <= 1 || blocks >= sms) return 1;
  int64_t want = (2 * static_cast<int64_t>(sms) + blocks - 1) / blocks;
  if (want > max_tiles) want = max_tiles;
  const int per = ceil_div(max_tiles, static_cast<int>(want));
  return ceil_div(max_tiles, per);  // so that the last split is not empty
}

// Online softmax of one query row over key tiles: the running maximum m of the scaled scores and
// the running sum l of exp(score - m). A masked score is -inf. Before a tile's probabilities are
// formed, rescale() folds the tile's maximum in and returns the factor by which the sum (done
// here) and the output accumulator (the caller's) must be multiplied. A row that has seen only
// masked scores keeps m = -inf and gets probability 0, never exp(-inf + inf).
struct OnlineSoftmax {
  float m = -INFINITY, l = 0.0f;
  OPD_HD float rescale(float tile_max) {
    const float m_new = fmaxf(m, tile_max);
    const float alpha = m_new == -INFINITY ? 1.0f : expf(m - m_new);
    m = m_new;
    l *= alpha;
    return alpha;
  }
  OPD_HD float prob(float score) const { return m == -INFINITY ? 0.0f : expf(score - m); }
  // With l the row's whole sum: log-sum-exp, -inf for a row that saw no key.
  OPD_HD float lse(float l_row) const { return l_row > 0.0f ? m + logf(l_row) : -INFINITY; }
};

// P of a visible score from the forward's row log-sum-exp (the backward's recomputation).
OPD_HD inline float prob_from_lse(float score, float lse) { return expf(score - lse); }

// Combining splits: split k produced o_k (normalised over its keys) and lse_k; the row's lse is
// the log-sum-exp of the lse_k and its output sum_k weight_k o_k.
OPD_HD inline float merge_lse_max(float m, float lse_k) { return fmaxf(m, lse_k); }
OPD_HD inline float split_weight(float lse_k, float lse) {
  return lse == -INFINITY ? 0.0f : expf(lse_k - lse);
}
OPD_HD inline float combined_lse(float max_lse, float sum_exp) {
  // sum_exp = sum_k exp(lse_k - max_lse); max_lse = -inf when no split saw a key.
  return max_lse == -INFINITY ? -INFINITY : max_lse + logf(sum_exp);
}

}  // namespace opd::backend::cuda::attn
