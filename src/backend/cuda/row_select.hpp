// Order statistics of one row for the CUDA distillation kernels, without sorting the row: the
// element at which a cumulative weight, taken in the top-k order (larger first, ties to the lower
// id; row_block.hpp's order_key), first crosses a target. Top-k selection is the same search with
// unit weights, the top-p cut and the inverse CDF of sampling are it with probability weights.
//
// The search fixes the 64-bit order key four bits at a time, from the top: every thread sums the
// weight and count of its strided share of the candidates into sixteen buckets by the next digit,
// the block adds the buckets up, and every thread walks them in order to the one where the
// crossing lies. A bucket holding a single candidate ends the search (one more pass finds it), so
// a row of distinct values needs a handful of passes, a row of ties at most sixteen.
#pragma once

#include "backend/cuda/row_block.hpp"

namespace opd::backend::cuda::rows {

// The crossing element (its key), the weight of the candidates before it and its own weight.
struct Crossing {
  uint64_t key = 0;
  double before = 0.0, weight = 0.0;
};

// Unit weights: the crossing at target k is the k-th candidate.
struct UnitWeight {
  OPD_ROW double operator()(int64_t, float) const { return 1.0; }
};

// Among the candidates of row x [V] (keys >= floor; floor 0: all), the first in the top-k order
// whose inclusive cumulative weight reaches the target (>= when `inclusive`, else >). Buckets
// without candidates are skipped; if rounding leaves no crossing, the last candidate is taken.
template <class Blk, class Weight>
OPD_ROW Crossing find_crossing(Blk& b, const float* x, int64_t V, uint64_t floor,
                               const Weight& weight, double target, bool inclusive) {
  uint64_t prefix = 0;
  double acc = 0.0;
  int shift = 60;
  for (;; shift -= 4) {
    const uint64_t high = shift == 60 ? 0 : ~uint64_t(0) << (shift + 4);
    double mass[16];
    int cnt[16];
    for (int d = 0; d < 16; ++d) {
      mass[d] = 0.0;
      cnt[d] = 0;
    }
    for (int64_t j = b.tid(); j < V; j += b.size()) {
      const uint64_t k = order_key(x[j], j);
      if (k < floor || (k & high) != prefix) continue;
      const int digit = int((k >> shift) & 15u);
      const double w = weight(j, x[j]);
      OPD_UNROLL
      for (int d = 0; d < 16; ++d)  // constant indices keep the buckets in registers
        if (d == digit) {
          mass[d] += w;
          cnt[d] += 1;
        }
    }
    b.sum16(mass, cnt);
    int chosen = -1, last = -1;
    double a = acc, a_last = acc;
    for (int d = 15; d >= 0; --d) {
      if (cnt[d] == 0) continue;
      const double c = a + mass[d];
      if (inclusive ? c >= target : c > target) {
        chosen = d;
        break;
      }
      last = d;
      a_last = a;
      a = c;
    }
    if (chosen < 0) {  // no crossing (rounding, or no candidate at all)
      if (last < 0) return Crossing{};
      chosen = last;
      a = a_last;
    }
    acc = a;
    prefix |= uint64_t(chosen) << shift;
    if (cnt[chosen] == 1 || shift == 0) break;
  }
  // The single candidate under the prefix.
  const uint64_t mask = ~uint64_t(0) << shift;
  uint64_t found = 0;
  for (int64_t j = b.tid(); j < V; j += b.size()) {
    const uint64_t k = order_key(x[j], j);
    if (k >= floor && (k & mask) == prefix && k > found) found = k;
  }
  found = b.max_u64(found);
  const int32_t id = key_id(found);
  return Crossing{found, acc, weight(id, x[id])};
}

// The key of the k-th element of row x (1 <= k <= V): the row's top k are the keys >= it.
template <class Blk>
OPD_ROW uint64_t kth_key(Blk& b, const float* x, int64_t V, int64_t k) {
  return find_crossing(b, x, V, 0, UnitWeight{}, double(k), true).key;
}

// The largest key of row x (its first element in the top-k order).
template <class Blk>
OPD_ROW uint64_t first_key(Blk& b, const float* x, int64_t V) {
  uint64_t best = 0;
  for (int64_t j = b.tid(); j < V; j += b.size()) {
    const uint64_t k = order_key(x[j], j);
    if (k > best) best = k;
  }
  return b.max_u64(best);
}

// The ids (columns) of row x with keys >= floor into out, in a fixed (thread-major) order, and
// their count. out must hold them all.
template <class Blk>
OPD_ROW int collect(Blk& b, const float* x, int64_t V, uint64_t floor, int32_t* out) {
  int mine = 0;
  for (int64_t j = b.tid(); j < V; j += b.size())
    if (order_key(x[j], j) >= floor) ++mine;
  int total = 0;
  int at = b.scan(mine, total);
  for (int64_t j = b.tid(); j < V; j += b.size())
    if (order_key(x[j], j) >= floor) out[at++] = int32_t(j);
  b.sync();
  return total;
}

// The k first ids of row x in the top-k order (1 <= k <= V) into out[0, k), in no particular
// order (as the CPU backend's heap selection).
template <class Blk>
OPD_ROW void select_topk(Blk& b, const float* x, int64_t V, int64_t k, int32_t* out) {
  collect(b, x, V, kth_key(b, x, V, k), out);
}

// ids[0, m) (columns of x, distinct) rewritten into sorted[0, m) in the top-k order: each
// element's place is the number of elements before it.
template <class Blk>
OPD_ROW void sort_ids(Blk& b, const float* x, const int32_t* ids, int64_t m, int32_t* sorted) {
  for (int64_t i = b.tid(); i < m; i += b.size()) {
    const uint64_t ki = order_key(x[ids[i]], ids[i]);
    int64_t place = 0;
    for (int64_t c = 0; c < m; ++c)
      if (order_key(x[ids[c]], ids[c]) > ki) ++place;
    sorted[place] = ids[i];
  }
  b.sync();
}

// Log-normaliser and entropy of softmax(x) over a row (the CPU backend's row_softmax): NaN for
// a row without a finite maximum; NaN entries propagate.
struct Softmax {
  double lse, entropy;
};

template <class Blk>
OPD_ROW double row_max(Blk& b, const float* x, int64_t V) {
  double m = -kInf;
  for (int64_t j = b.tid(); j < V; j += b.size()) m = dmax(m, double(x[j]));
  return b.max(m);
}

template <class Blk>
OPD_ROW Softmax row_softmax(Blk& b, const float* x, int64_t V) {
  const double m = row_max(b, x, V);
  if (!is_finite(m)) return {kNaN, kNaN};  // the same for every thread
  double s = 0.0, t = 0.0;
  for (int64_t j = b.tid(); j < V; j += b.size()) {
    const double d = double(x[j]) - m;
    const double e = exp(d);
    s += e;
    if (e > 0.0) t += e * d;  // -inf entries carry no mass
  }
  s = b.sum(s);
  t = b.sum(t);
  return {m + log(s), log(s) - t / s};
}

// log sum exp of a row (objective_math's lse_f): the non-finite maximum itself when there is
// no finite one.
template <class Blk>
OPD_ROW double row_lse(Blk& b, const float* x, int64_t V) {
  const double m = row_max(b, x, V);
  if (!is_finite(m)) return m;
  double s = 0.0;
  for (int64_t j = b.tid(); j < V; j += b.size()) s += exp(double(x[j]) - m);
  return m + log(b.sum(s));
}

}  // namespace opd::backend::cuda::rows
