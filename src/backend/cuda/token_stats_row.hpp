// token_stats for the CUDA backend (backend/ops.hpp), one block per row: the row's code (device,
// or the host emulation test). The checks and parameter block are token_stats_prepare.hpp's.
//
// The block computes the row's softmax statistics (and in Full mode both rows' and KL(p || q) in
// one pass, and the top-k sets by selection); thread 0 then forms the few set statistics over
// k entries serially, exactly as the CPU backend (backend/cpu/token_stats.cpp) does per row. With
// a vocabulary shard every quantity comes from the shard rows and no pass over z is made.
#pragma once

#include "backend/cuda/row_select.hpp"
#include "backend/ops.hpp"

namespace opd::backend::cuda::rows {

struct StatsParams {
  Signal mode = Signal::Sampled;
  int64_t V = 0;
  const float* z = nullptr;  // [n, V]
  const int32_t* y = nullptr;
  // The outputs, null where not asked for: logp_y, entropy_p, logq_y, entropy_q, kl_full,
  // kl_topk, overlap_ratio, overlap_mass_p, overlap_mass_q, overlap_adv.
  float* out[10] = {};
  // Sampled: log q(y) [n], H(q) [n] (either may be null).
  const float *tq_y = nullptr, *tq_h = nullptr;
  // TopK: the student's [n, kp] and teacher's [n, kq] ids and log q at them; pos [n, kp] scratch.
  const int32_t *sid = nullptr, *tid = nullptr;
  const float *lqs = nullptr, *lqt = nullptr;
  int64_t kp = 0, kq = 0;
  int32_t* pos = nullptr;
  // Full: the teacher's logits [n, V], the diagnostics' k (0: no sets) and scratch [n, 2k].
  const float* x = nullptr;
  int64_t k = 0;
  int32_t* sets = nullptr;
  // Vocabulary shard (null sh_lse: none): K ids per row, z at them, the whole rows' softmax.
  const double *sh_lse = nullptr, *sh_entropy = nullptr, *sh_z = nullptr;
  int64_t K = 0;
  // Full mode on a shard: the teacher's side, the ids and the columns of p's and q's top-k lists.
  const int32_t* sh_ids = nullptr;
  const double *sh_lse_u = nullptr, *sh_entropy_u = nullptr, *sh_u = nullptr, *sh_kl = nullptr;
  int64_t c_p = 0, c_q = 0;

  OPD_ROW_HOST bool overlap() const { return out[6] || out[7] || out[8] || out[9]; }
};

enum StatOut { kLogpY, kEntropyP, kLogqY, kEntropyQ, kKlFull, kKlTopk, kRatio, kMassP, kMassQ, kAdv };

OPD_ROW void put(const StatsParams& P, int which, int64_t r, double v) {
  if (P.out[which]) P.out[which][r] = float(v);
}

// log sum_{i<m} exp(lf(i)): -inf for a set without mass (or an empty one), NaN if any term is.
template <class LogF>
OPD_ROW double set_lse(int64_t m, const LogF& lf) {
  double mx = -kInf;
  for (int64_t i = 0; i < m; ++i) {
    const double v = lf(i);
    if (is_nan(v)) return kNaN;
    mx = dmax(mx, v);
  }
  if (mx == -kInf) return -kInf;
  double s = 0.0;
  for (int64_t i = 0; i < m; ++i) s += exp(lf(i) - mx);
  return mx + log(s);
}

// The masses p(S), q(S) and KL(p_bar || q_bar) of both renormalised on a set of m members (NaN
// when either restriction has no mass).
struct SetStats {
  double mass_p, mass_q, kl;
};

template <class LogP, class LogQ>
OPD_ROW SetStats set_stats(int64_t m, const LogP& lp, const LogQ& lq) {
  const double lse_p = set_lse(m, lp), lse_q = set_lse(m, lq);
  SetStats s{exp(lse_p), exp(lse_q), kNaN};
  if (!is_finite(lse_p) || !is_finite(lse_q)) return s;
  double kl = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    const double a = lp(i) - lse_p;
    if (a > -kInf) kl += exp(a) * (a - (lq(i) - lse_q));
  }
  s.kl = kl;
  return s;
}

OPD_ROW void write_overlap(const StatsParams& P, int64_t r, int64_t shared, int64_t k,
                           const SetStats& s) {
  put(P, kRatio, r, double(shared) / double(k));
  put(P, kMassP, r, s.mass_p);
  put(P, kMassQ, r, s.mass_q);
  put(P, kAdv, r, shared == 0 ? 0.0 : (0.0 - s.kl) / double(shared));
}

OPD_ROW void write_nan(const StatsParams& P, int64_t r, int from) {
  for (int o = from; o < 10; ++o) put(P, o, r, kNaN);
}

// Sampled and TopK modes (whole rows or a shard's): everything after the row's softmax is thread
// 0's, over the k ids.
template <class Blk>
OPD_ROW void stats_row_lists(Blk& b, const StatsParams& P, int64_t r) {
  const float* zr = P.z + r * P.V;
  const bool sh = P.sh_lse != nullptr;
  const Softmax p = sh ? Softmax{P.sh_lse[r], P.sh_entropy[r]} : row_softmax(b, zr, P.V);
  if (b.tid() != 0) return;
  const int32_t yr = P.y[r];
  put(P, kLogpY, r, (sh ? P.sh_z[r * P.K] : double(zr[yr])) - p.lse);
  put(P, kEntropyP, r, p.entropy);
  if (P.mode == Signal::Sampled) {
    if (P.out[kLogqY]) P.out[kLogqY][r] = P.tq_y[r];
    put(P, kEntropyQ, r, P.tq_h ? double(P.tq_h[r]) : kNaN);
    write_nan(P, r, kKlFull);
    return;
  }
  put(P, kEntropyQ, r, kNaN);
  put(P, kKlFull, r, kNaN);
  if (!P.sid) return;  // nothing below was asked for
  const int32_t* s_r = P.sid + r * P.kp;
  const float* lqs_r = P.lqs + r * P.kp;
  if (P.out[kLogqY]) {
    double v = kNaN;  // y outside both sets: the teacher did not send q(y)
    bool hit = false;
    for (int64_t i = 0; i < P.kp && !hit; ++i)
      if (s_r[i] == yr) {
        v = lqs_r[i];
        hit = true;
      }
    if (!hit && P.tid)
      for (int64_t i = 0; i < P.kq && !hit; ++i)
        if (P.tid[r * P.kq + i] == yr) {
          v = P.lqt[r * P.kq + i];
          hit = true;
        }
    put(P, kLogqY, r, v);
  }
  auto logp_at = [&](int64_t i) {
    return (sh ? P.sh_z[r * P.K + 1 + i] : double(zr[s_r[i]])) - p.lse;
  };
  auto logq_at = [&](int64_t i) { return double(lqs_r[i]); };
  if (P.out[kKlTopk]) put(P, kKlTopk, r, set_stats(P.kp, logp_at, logq_at).kl);
  if (P.overlap()) {
    int32_t* pos = P.pos + r * P.kp;  // positions in S^p of I = S^p ∩ S^q, in S^p's order
    int64_t m = 0;
    for (int64_t i = 0; i < P.kp; ++i)
      if (contains(P.tid + r * P.kq, P.kq, s_r[i])) pos[m++] = int32_t(i);
    const SetStats s = set_stats(
        m, [&](int64_t i) { return logp_at(pos[i]); }, [&](int64_t i) { return logq_at(pos[i]); });
    write_overlap(P, r, m, P.kp, s);  // over the student's k
  }
}

// Full mode on whole rows: both softmaxes and KL(p || q) in one pass,
//   KL = sum e_p (dp - dq) / s_p - log s_p + log s_q  (dp = z - max z, dq = x - max x),
// then the top-k sets of p and q by selection.
template <class Blk>
OPD_ROW void stats_row_full(Blk& b, const StatsParams& P, int64_t r) {
  const int64_t V = P.V;
  const float* zr = P.z + r * V;
  const float* xr = P.x + r * V;
  const double mz = row_max(b, zr, V), mx = row_max(b, xr, V);
  double lse_p = kNaN, h_p = kNaN, lse_q = kNaN, h_q = kNaN, kl = kNaN;
  if (is_finite(mz) && is_finite(mx)) {
    double sp = 0.0, tp = 0.0, sq = 0.0, tq = 0.0, cross = 0.0;
    for (int64_t j = b.tid(); j < V; j += b.size()) {
      const double dp = double(zr[j]) - mz, dq = double(xr[j]) - mx;
      const double ep = exp(dp), eq = exp(dq);
      sp += ep;
      sq += eq;
      if (ep > 0.0) {
        tp += ep * dp;
        cross += ep * (dp - dq);  // +inf where q = 0 < p
      }
      if (eq > 0.0) tq += eq * dq;
    }
    sp = b.sum(sp);
    tp = b.sum(tp);
    sq = b.sum(sq);
    tq = b.sum(tq);
    cross = b.sum(cross);
    const double lsp = log(sp), lsq = log(sq);
    lse_p = mz + lsp;
    h_p = lsp - tp / sp;
    lse_q = mx + lsq;
    h_q = lsq - tq / sq;
    kl = cross / sp - lsp + lsq;
  }
  const int32_t yr = P.y[r];
  if (b.tid() == 0) {
    put(P, kLogpY, r, double(zr[yr]) - lse_p);
    put(P, kEntropyP, r, h_p);
    put(P, kLogqY, r, double(xr[yr]) - lse_q);
    put(P, kEntropyQ, r, h_q);
    put(P, kKlFull, r, kl);
  }
  const int64_t k = P.k;
  if (k == 0) return;
  int32_t* sp = P.sets + r * 2 * k;
  int32_t* sq = sp + k;
  select_topk(b, zr, V, k, sp);
  if (P.overlap()) select_topk(b, xr, V, k, sq);
  if (b.tid() != 0) return;
  auto logp_id = [&](int32_t id) { return double(zr[id]) - lse_p; };
  auto logq_id = [&](int32_t id) { return double(xr[id]) - lse_q; };
  if (P.out[kKlTopk])
    put(P, kKlTopk, r,
        set_stats(
            k, [&](int64_t i) { return logp_id(sp[i]); }, [&](int64_t i) { return logq_id(sp[i]); })
            .kl);
  if (P.overlap()) {
    int64_t m = 0;  // S^p compacted to I = S^p ∩ S^q, in order
    for (int64_t i = 0; i < k; ++i)
      if (contains(sq, k, sp[i])) sp[m++] = sp[i];
    const SetStats s = set_stats(
        m, [&](int64_t i) { return logp_id(sp[i]); }, [&](int64_t i) { return logq_id(sp[i]); });
    write_overlap(P, r, m, k, s);
  }
}

// Full mode on a vocabulary shard: everything comes whole from the shard rows (thread 0).
OPD_ROW void stats_row_full_shard(const StatsParams& P, int64_t r) {
  const int64_t K = P.K;
  const double lse = P.sh_lse[r], lse_u = P.sh_lse_u[r];
  const double* za = P.sh_z + r * K;
  const double* ua = P.sh_u + r * K;
  put(P, kLogpY, r, za[0] - lse);
  put(P, kEntropyP, r, P.sh_entropy[r]);
  put(P, kLogqY, r, ua[0] - lse_u);
  put(P, kEntropyQ, r, P.sh_entropy_u[r]);
  put(P, kKlFull, r, P.sh_kl[r]);
  const int64_t k = P.k;
  if (k == 0) return;
  auto logp = [&](int64_t c) { return za[c] - lse; };
  auto logq = [&](int64_t c) { return ua[c] - lse_u; };
  if (P.out[kKlTopk])
    put(P, kKlTopk, r,
        set_stats(
            k, [&](int64_t i) { return logp(P.c_p + i); }, [&](int64_t i) { return logq(P.c_p + i); })
            .kl);
  if (P.overlap()) {
    const int32_t* row = P.sh_ids + r * K;
    int32_t* cols = P.sets + r * k;  // I = S^p ∩ S^q as columns of S^p
    int64_t m = 0;
    for (int64_t i = 0; i < k; ++i)
      if (contains(row + P.c_q, k, row[P.c_p + i])) cols[m++] = int32_t(P.c_p + i);
    const SetStats s = set_stats(
        m, [&](int64_t i) { return logp(cols[i]); }, [&](int64_t i) { return logq(cols[i]); });
    write_overlap(P, r, m, k, s);
  }
}

template <class Blk>
OPD_ROW void token_stats_row(Blk& b, const StatsParams& P, int64_t r) {
  if (P.mode != Signal::Full) {
    stats_row_lists(b, P, r);
  } else if (P.sh_lse) {
    if (b.tid() == 0) stats_row_full_shard(P, r);
  } else {
    stats_row_full(b, P, r);
  }
}

}  // namespace opd::backend::cuda::rows
