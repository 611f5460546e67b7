// objective_rows for the CUDA backend: the parameter block and the serial part of a row (thread
// 0 of its block, phase 2 of objective_row.hpp) — the sampled-token term and the support lists
// over k entries, in double, line for line the CPU backend's objective_math.hpp — leaving the
// dense gradient's coefficients for the block in an ObjState.
#pragma once

#include "backend/cuda/row_block.hpp"
#include "backend/ops.hpp"

namespace opd::backend::cuda::rows {

constexpr double kTailFloor = 1e-30;  // smallest student tail mass in the top-k Fkl tail bucket

struct ObjParams {
  int64_t V = 0;
  const float* z = nullptr;
  float* dz = nullptr;
  float* loss = nullptr;
  const int32_t* y = nullptr;  // null when neither the kind nor the extra term uses y
  const float *logmu = nullptr, *adv = nullptr, *baseline = nullptr, *w = nullptr;
  Signal mode = Signal::Sampled;
  const float* u = nullptr;  // Full: teacher logits [n, V]
  const int32_t* sid = nullptr;
  const float* slq = nullptr;  // TopK: log q at the student ids
  int64_t ks = 0;
  const int32_t* tid = nullptr;
  const float* tlq = nullptr;  // TopK: log q at the teacher ids
  int64_t kt = 0;
  bool teacher_topk_from_logits = false;
  ObjectiveArgs args;
  // Scratch: cap entries per row for the support, kt per row for the teacher's top-k.
  int64_t cap = 0;
  int32_t* s_id = nullptr;
  double *s_lq = nullptr, *s_lp = nullptr, *s_c = nullptr;
  int32_t* heap = nullptr;
  // Vocabulary shard (null sh_lse: none): columns [begin, begin + V) of the vocabulary.
  int64_t begin = 0;
  const double *sh_lse = nullptr, *sh_tail = nullptr, *sh_z = nullptr;
  const int32_t* sh_ids = nullptr;
  int64_t sk = 0;
  const double *sh_lse_u = nullptr, *sh_u = nullptr, *sh_kl_pq = nullptr, *sh_kl_qp = nullptr,
               *sh_jsd = nullptr, *sh_jsd_pg = nullptr;
  OPD_ROW bool sharded() const { return sh_lse != nullptr; }
};

// Per-row view of the student and teacher lists with log q for each entry.
struct RowLists {
  const int32_t *sid, *tid;
  int64_t ks, kt;
  const float *slq, *tlq, *u;
  double lse_u;
  const int32_t* sh_ids;  // vocabulary shard in Full mode: u at the carried ids
  const double* sh_u;
  int64_t sk;
  OPD_ROW double lq_id(int64_t id) const {
    if (sh_u) return carried(sh_ids, sh_u, sk, id) - lse_u;
    return double(u[id]) - lse_u;
  }
  OPD_ROW double lq_s(int64_t i) const { return (u || sh_u) ? lq_id(sid[i]) : double(slq[i]); }
  OPD_ROW double lq_t(int64_t i) const { return (u || sh_u) ? lq_id(tid[i]) : double(tlq[i]); }
};

// The PgTopK support S (DESIGN.md §4) written into (id, lq); returns |S|.
OPD_ROW int64_t build_support(const RowLists& L, Support support, int32_t* id, double* lq) {
  int64_t m = 0;
  const bool s_all = support == Support::Student || support == Support::Union;
  const bool s_common = support == Support::Intersection;
  const bool s_only = support == Support::SymDiff;
  if (s_all || s_common || s_only)
    for (int64_t i = 0; i < L.ks; ++i) {
      const bool in_t = s_all ? false : contains(L.tid, L.kt, L.sid[i]);
      if (s_all || (s_common && in_t) || (s_only && !in_t)) {
        id[m] = L.sid[i];
        lq[m] = L.lq_s(i);
        ++m;
      }
    }
  const bool t_all = support == Support::Teacher;
  const bool t_only = support == Support::Union || support == Support::SymDiff;
  if (t_all || t_only)
    for (int64_t i = 0; i < L.kt; ++i)
      if (t_all || !contains(L.sid, L.ks, L.tid[i])) {
        id[m] = L.tid[i];
        lq[m] = L.lq_t(i);
        ++m;
      }
  return m;
}

// The dense part of the gradient beyond pcoef * p_j.
enum DenseKind : int { kDenseNone, kDenseRkl, kDenseFkl, kDenseJsd };

// What thread 0 leaves for the block (phase 2).
struct ObjState {
  double loss, pcoef, dense_pcoef, ycoef, a, w, q_tail;
  int64_t ycol, ysel, m;
  int dense;
  bool tail_pending;
};
static_assert(sizeof(ObjState) <= kSharedBytes, "ObjState exceeds the block's shared slot");

// Phase 2 (thread 0). vsum, vsum2: the phase 1 sums (whole rows).
OPD_ROW void objective_serial(const ObjParams& in, int64_t r, double lse, double lse_u,
                              ObjectiveKind kind, double vsum, double vsum2,
                              ObjState& S) {
  const int64_t V = in.V;
  const ObjectiveArgs& args = in.args;
  const float* z = in.z + r * V;
  const double w = double(in.w[r]);
  const bool sharded = in.sharded();
  auto lp_at = [&](int64_t j) {
    if (!sharded) return double(z[j]) - lse;
    return carried(in.sh_ids + r * in.sk, in.sh_z + r * in.sk, in.sk, j) - lse;
  };
  double loss = 0.0, pcoef = 0.0, ycoef = 0.0, lp_y = 0.0;
  int32_t yr = 0;
  if (in.y) {
    yr = in.y[r];
    lp_y = lp_at(yr);
  }
  const int64_t ysel = in.y ? int64_t(yr) : -1;
  S.ysel = ysel;
  S.ycol = ysel - in.begin >= 0 && ysel - in.begin < V ? ysel - in.begin : -1;

  // The sampled-token term: loss -w rho a (PPO-clipped when clip > 0), gradient -w a rho (e_y - p).
  if (in.adv) {
    const double a = double(in.adv[r]);
    double rho = 1.0;
    if (args.use_ratio) rho = exp(lp_y - double(in.logmu[r]));
    const double unclipped = rho * a;
    double value = unclipped;
    bool active = true;
    if (args.use_ratio && args.clip > 0.0f) {
      const double c = double(args.clip);
      const double clipped = dmin(dmax(rho, 1.0 - c), 1.0 + c) * a;
      if (clipped < unclipped) {  // the clipped branch is the min: constant in z
        value = clipped;
        active = false;
      }
    }
    loss -= w * value;
    if (active && a != 0.0) {
      const double g = w * a * rho;
      pcoef += g;
      ycoef -= g;
    }
  }

  const float* u = in.u ? in.u + r * V : nullptr;
  RowLists L{in.sid ? in.sid + r * in.ks : nullptr,
             in.tid ? in.tid + r * in.kt : nullptr,
             in.ks,
             in.kt,
             in.slq ? in.slq + r * in.ks : nullptr,
             in.tlq ? in.tlq + r * in.kt : nullptr,
             u,
             lse_u,
             nullptr,
             nullptr,
             0};
  if (sharded && u) {
    L.sh_ids = in.sh_ids + r * in.sk;
    L.sh_u = in.sh_u + r * in.sk;
    L.sk = in.sk;
  }
  if (in.teacher_topk_from_logits) L.tid = in.heap + r * in.kt;
  int32_t* s_id = in.s_id + r * in.cap;
  double* s_lq = in.s_lq + r * in.cap;
  double* s_lp = in.s_lp + r * in.cap;
  double* s_c = in.s_c + r * in.cap;
  int64_t m = 0;
  S.dense = kDenseNone;
  S.tail_pending = false;
  S.a = 0.0;

  switch (kind) {
    case ObjectiveKind::PgSampled:
      break;

    case ObjectiveKind::Sft:
      loss -= w * lp_y;
      pcoef += w;
      ycoef -= w;
      break;

    case ObjectiveKind::PgTopK: {
      m = build_support(L, args.support, s_id, s_lq);
      if (m > 0) {
        for (int64_t i = 0; i < m; ++i) s_lp[i] = lp_at(s_id[i]);
        const double bl = in.baseline ? double(in.baseline[r]) : 0.0;
        const double tw = double(args.teacher_weight);
        double norm = 0.0;
        if (args.weight == SupportWeight::StudentP) norm = lse_list(s_lp, m);
        if (args.weight == SupportWeight::TeacherP) norm = lse_list(s_lq, m);
        double asum = 0.0;
        for (int64_t i = 0; i < m; ++i) {
          double c = 1.0 / double(m);
          if (args.weight == SupportWeight::StudentP) c = exp(s_lp[i] - norm);
          if (args.weight == SupportWeight::TeacherP) c = exp(s_lq[i] - norm);
          const double a = c > 0.0 ? c * (tw * (s_lq[i] - s_lp[i]) - bl) : 0.0;  // sg[c_v r_v]
          asum += a;
          if (a != 0.0) loss -= w * a * s_lp[i];
          s_c[i] = -w * a;
        }
        pcoef += w * asum;
      }
      break;
    }

    case ObjectiveKind::TopKRkl: {
      m = L.ks;
      for (int64_t i = 0; i < m; ++i) {
        s_id[i] = L.sid[i];
        s_lq[i] = L.lq_s(i);
        s_lp[i] = lp_at(s_id[i]);
      }
      const double lps = lse_list(s_lp, m), lqs = lse_list(s_lq, m);
      double kl = 0.0;
      for (int64_t i = 0; i < m; ++i) kl += xdiff(exp(s_lp[i] - lps), s_lp[i] - lps, s_lq[i] - lqs);
      loss += w * kl;
      for (int64_t i = 0; i < m; ++i) {
        const double pb = exp(s_lp[i] - lps);
        s_c[i] = pb > 0.0 ? w * pb * ((s_lp[i] - lps) - (s_lq[i] - lqs) - kl) : 0.0;
      }
      break;
    }

    case ObjectiveKind::FullRkl: {
      const double kl = sharded ? in.sh_kl_pq[r] : vsum;
      loss += w * kl;
      S.dense = kDenseRkl;
      S.a = kl;
      break;
    }

    case ObjectiveKind::Fkl: {
      if (in.mode == Signal::Full) {
        const double kl = sharded ? in.sh_kl_qp[r] : vsum;
        loss += w * kl;
        S.dense = kDenseFkl;
        break;
      }
      // TopK mode on the teacher's top-k T.
      m = L.kt;
      for (int64_t i = 0; i < m; ++i) {
        s_id[i] = L.tid[i];
        s_lq[i] = L.lq_t(i);
        s_lp[i] = lp_at(s_id[i]);
      }
      if (!args.tail) {
        // KL(q_bar || p_bar) on T; gradient w (p_bar - q_bar) on T.
        const double lps = lse_list(s_lp, m), lqs = lse_list(s_lq, m);
        double kl = 0.0;
        for (int64_t i = 0; i < m; ++i) {
          const double lqb = s_lq[i] - lqs, lpb = s_lp[i] - lps;
          kl += xdiff(exp(lqb), lqb, lpb);
          s_c[i] = w * (exp(lpb) - exp(lqb));
        }
        loss += w * kl;
        break;
      }
      // With the tail bucket: T's ids sorted after the support (cap >= 2 kt) for phase 3.
      double qsum = 0.0;
      for (int64_t i = 0; i < m; ++i) qsum += exp(s_lq[i]);
      S.q_tail = dmax(0.0, 1.0 - qsum);
      int32_t* sorted = s_id + m;
      for (int64_t i = 0; i < m; ++i) {
        int64_t at = i;
        while (at > 0 && sorted[at - 1] > s_id[i]) {
          sorted[at] = sorted[at - 1];
          --at;
        }
        sorted[at] = s_id[i];
      }
      S.tail_pending = true;
      break;
    }

    case ObjectiveKind::Jsd: {
      // 0 < beta < 1: D = beta KL(q||m) + (1-beta) KL(p||m); dD/dz_j = p_j (g_j - sum_i p_i g_i).
      const double d = sharded ? in.sh_jsd[r] : vsum;
      const double pg = sharded ? in.sh_jsd_pg[r] : vsum2;
      loss += w * d;
      S.dense = kDenseJsd;
      S.a = pg;
      break;
    }
  }
  S.loss = loss;
  S.pcoef = pcoef;
  S.dense_pcoef = pcoef;
  S.ycoef = ycoef;
  S.w = w;
  S.m = m;
}

// Fkl's tail bucket, once p of the ids outside T is known (thread 0):
//   KL over the k + 1 buckets; d/dz_j = w (p_j - q_j) on T, w p_j (1 - q_tail / p_tail) elsewhere.
OPD_ROW void finish_tail(const ObjParams& in, int64_t r, double p_tail, ObjState& S) {
  const double* s_lq = in.s_lq + r * in.cap;
  const double* s_lp = in.s_lp + r * in.cap;
  double* s_c = in.s_c + r * in.cap;
  const double w = S.w, q_tail = S.q_tail;
  p_tail = dmax(p_tail, kTailFloor);
  double kl = 0.0;
  for (int64_t i = 0; i < S.m; ++i) kl += xdiff(exp(s_lq[i]), s_lq[i], s_lp[i]);
  if (q_tail > 0.0) kl += q_tail * (log(q_tail) - log(p_tail));
  S.loss += w * kl;
  for (int64_t i = 0; i < S.m; ++i) s_c[i] = w * (exp(s_lp[i]) - exp(s_lq[i]));
  S.dense_pcoef = S.pcoef + w * (1.0 - q_tail / p_tail);
}

}  // namespace opd::backend::cuda::rows
