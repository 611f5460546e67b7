// Per-row mathematics of objective_rows (backend/ops.hpp, DESIGN.md §4): the loss of one row and
// its gradient with respect to the student logits z_r. objectives.cpp validates the inputs, fills
// an ObjectiveRows and runs objective_row once per row; nothing here throws or allocates.
//
// Every row is computed in double. The gradient of each kind has the form
//   dz_j = pcoef * p_j + dense_j (+ ycoef at j = y)   for all j, then
//   dz_v = pcoef * p_v + s_c[v] (+ ycoef at v = y)    rewritten on the support ids (top-k kinds),
// with every value read from z (log p on the support, log p(y)) before the first write to dz,
// so dz may alias z.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/ops.hpp"

namespace opd::backend::cpu::objective_math {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kTailFloor = 1e-30;  // smallest student tail mass in the top-k Fkl tail bucket

// log sum_j exp(x_j) in double with the max shifted out; -inf for an empty or fully masked row.
inline double lse_f(const float* x, int64_t n) {
  double m = kNegInf;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, static_cast<double>(x[j]));
  if (!std::isfinite(m)) return m;
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(x[j]) - m);
  return m + std::log(s);
}
inline double lse_d(const double* x, int64_t n) {
  double m = kNegInf;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  if (!std::isfinite(m)) return m;
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(x[j] - m);
  return m + std::log(s);
}

// x * (la - lb) with the convention 0 * anything = 0 (no NaN from 0 * log 0).
inline double xdiff(double x, double la, double lb) { return x > 0.0 ? x * (la - lb) : 0.0; }

// log(exp(a) + exp(b)) for a, b possibly -inf.
inline double log_add(double a, double b) {
  const double m = std::max(a, b);
  if (m == kNegInf) return kNegInf;
  return m + std::log(std::exp(a - m) + std::exp(b - m));
}

// Everything one row needs; raw host pointers (null = input absent). Scratch arrays hold `cap`
// entries per row (cap >= ks + kt), `heap` holds ks entries per row (Full-mode teacher top-k).
struct ObjectiveRows {
  int64_t V = 0;
  const float* z = nullptr;
  float* dz = nullptr;
  float* loss = nullptr;
  const int32_t* y = nullptr;  // null when the kind and the extra term do not use y
  const float* logmu = nullptr;
  const float* adv = nullptr;
  const float* baseline = nullptr;
  const float* w = nullptr;
  Signal mode = Signal::Sampled;
  const float* u = nullptr;  // Full: teacher logits [n, V]
  const int32_t* sid = nullptr;
  const float* slq = nullptr;  // TopK: log q at the student ids
  int64_t ks = 0;
  const int32_t* tid = nullptr;
  const float* tlq = nullptr;  // TopK: log q at the teacher ids
  int64_t kt = 0;              // teacher list length (Full without teacher_ids: ks, from `heap`)
  bool teacher_topk_from_logits = false;
  ObjectiveArgs args;
  int64_t cap = 0;
  int32_t* s_id = nullptr;
  double* s_lq = nullptr;
  double* s_lp = nullptr;
  double* s_c = nullptr;
  int32_t* heap = nullptr;
  // Vocabulary shard (ShardRows): z and dz hold columns [begin, begin + V) of a vocabulary of
  // V_all; the row's lse, p(tail) and z at its ids (sk per row) come whole from the shard rows.
  int64_t begin = 0, V_all = 0;
  const double* sh_lse = nullptr;
  const double* sh_tail = nullptr;
  const int32_t* sh_ids = nullptr;
  const double* sh_z = nullptr;
  int64_t sk = 0;
  // Full mode: the teacher's log-normaliser, u at the ids, and the sums over the vocabulary.
  const double *sh_lse_u = nullptr, *sh_u = nullptr, *sh_kl_pq = nullptr, *sh_kl_qp = nullptr,
               *sh_jsd = nullptr, *sh_jsd_pg = nullptr;
  bool sharded() const { return sh_lse != nullptr; }
};

// The value carried for `id` in a row's list of (ids, values); NaN when it is not carried.
inline double carried(const int32_t* ids, const double* values, int64_t k, int64_t id) {
  for (int64_t c = 0; c < k; ++c)
    if (ids[c] == id) return values[c];
  return std::numeric_limits<double>::quiet_NaN();
}

// A list of (id, log q) entries in the row's scratch.
struct IdList {
  int32_t* id;
  double* lq;
  int64_t m;
};

// The k largest teacher logits of a row (ties: lower id first) into ids[0..k).
inline void topk_ids(const float* u, int64_t V, int64_t k, int32_t* ids) {
  auto key = [u](int32_t a) {
    const float v = u[a];
    return v != v ? -std::numeric_limits<float>::infinity() : v;
  };
  auto before = [&](int32_t a, int32_t b) {
    const float ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  };
  for (int64_t j = 0; j < k; ++j) ids[j] = static_cast<int32_t>(j);
  std::make_heap(ids, ids + k, before);
  for (int64_t j = k; j < V; ++j) {
    const int32_t id = static_cast<int32_t>(j);
    if (before(id, ids[0])) {
      std::pop_heap(ids, ids + k, before);
      ids[k - 1] = id;
      std::push_heap(ids, ids + k, before);
    }
  }
}

inline bool contains(const int32_t* ids, int64_t k, int32_t v) {
  for (int64_t i = 0; i < k; ++i)
    if (ids[i] == v) return true;
  return false;
}

// Per-row view of the student and teacher lists with log q for each entry.
struct RowLists {
  const int32_t* sid;
  const int32_t* tid;
  int64_t ks, kt;
  // log q of the i-th student / teacher entry
  const float* slq;
  const float* tlq;
  const float* u;
  double lse_u;
  // Vocabulary shard in Full mode: u at the row's carried ids instead of u's columns.
  const int32_t* sh_ids = nullptr;
  const double* sh_u = nullptr;
  int64_t sk = 0;
  double lq_id(int32_t id) const {
    if (sh_u) return carried(sh_ids, sh_u, sk, id) - lse_u;
    return static_cast<double>(u[id]) - lse_u;
  }
  double lq_s(int64_t i) const {
    return (u || sh_u) ? lq_id(sid[i]) : static_cast<double>(slq[i]);
  }
  double lq_t(int64_t i) const {
    return (u || sh_u) ? lq_id(tid[i]) : static_cast<double>(tlq[i]);
  }
};

// The PgTopK support S (DESIGN.md §4) written into out; returns |S|.
inline int64_t build_support(const RowLists& L, Support support, int32_t* id, double* lq) {
  int64_t m = 0;
  const bool take_s_all = support == Support::Student || support == Support::Union;
  const bool take_s_common = support == Support::Intersection;
  const bool take_s_only = support == Support::SymDiff;
  if (take_s_all || take_s_common || take_s_only) {
    for (int64_t i = 0; i < L.ks; ++i) {
      const bool in_t = (take_s_all) ? false : contains(L.tid, L.kt, L.sid[i]);
      if (take_s_all || (take_s_common && in_t) || (take_s_only && !in_t)) {
        id[m] = L.sid[i];
        lq[m] = L.lq_s(i);
        ++m;
      }
    }
  }
  const bool take_t_all = support == Support::Teacher;
  const bool take_t_only = support == Support::Union || support == Support::SymDiff;
  if (take_t_all || take_t_only) {
    for (int64_t i = 0; i < L.kt; ++i) {
      if (take_t_all || !contains(L.sid, L.ks, L.tid[i])) {
        id[m] = L.tid[i];
        lq[m] = L.lq_t(i);
        ++m;
      }
    }
  }
  return m;
}

// The sampled token's gradient coefficient: dz[y] gets ycoef on top of the rest (y < 0: none).
struct YTerm {
  int64_t y;
  double coef;
};

// dz_j = pcoef * p_j + dense(j, lp_j, p_j) (+ ycoef at j = y) for every j of the row.
template <class Dense>
inline void write_dense(const float* z, float* dz, int64_t V, double lse, double pcoef, YTerm yt,
                        Dense dense) {
  for (int64_t j = 0; j < V; ++j) {
    const double lp = static_cast<double>(z[j]) - lse;
    const double p = std::exp(lp);
    double g = pcoef * p + dense(j, lp, p);
    if (j == yt.y) g += yt.coef;
    dz[j] = static_cast<float>(g);
  }
}

// Kinds whose dense part is pcoef * p alone: the support entries (distinct ids, log p in s_lp)
// get their correction s_c in double, dz[v] = pcoef * p_v + [v = y] ycoef + s_c. With a
// vocabulary shard dz holds columns [begin, begin + V) only; ids elsewhere are another rank's.
inline void write_sparse(float* dz, int64_t m, const int32_t* s_id, const double* s_lp,
                         const double* s_c, double pcoef, YTerm yt, int64_t begin = 0,
                         int64_t V = std::numeric_limits<int64_t>::max()) {
  for (int64_t i = 0; i < m; ++i) {
    const int64_t j = static_cast<int64_t>(s_id[i]) - begin;
    if (j < 0 || j >= V) continue;
    double g = pcoef * std::exp(s_lp[i]) + s_c[i];
    if (s_id[i] == yt.y) g += yt.coef;
    dz[j] = static_cast<float>(g);
  }
}

// One row: writes dz row r and returns the row's loss.
inline double objective_row(const ObjectiveRows& in, int64_t r) {
  const int64_t V = in.V;
  const ObjectiveArgs& args = in.args;
  const float* z = in.z + r * V;
  float* dz = in.dz + r * V;
  const double w = static_cast<double>(in.w[r]);
  const bool sharded = in.sharded();
  const double lse = sharded ? in.sh_lse[r] : lse_f(z, V);
  // log p at a (global) id: read from the row, or, with a vocabulary shard, from the ids whose
  // logits the shard rows carry whole.
  auto lp_at = [&](int64_t j) {
    if (!sharded) return static_cast<double>(z[j]) - lse;
    return carried(in.sh_ids + r * in.sk, in.sh_z + r * in.sk, in.sk, j) - lse;
  };

  const float* u = in.u ? in.u + r * V : nullptr;
  const double lse_u = u ? (sharded ? in.sh_lse_u[r] : lse_f(u, V)) : 0.0;

  double loss = 0.0;
  double pcoef = 0.0;  // coefficient of p_j in the dense part of the gradient
  double ycoef = 0.0;  // added to dz[y]
  int32_t yr = 0;
  double lp_y = 0.0;
  if (in.y) {
    yr = in.y[r];
    lp_y = lp_at(yr);
  }
  const int64_t ysel = in.y ? static_cast<int64_t>(yr) : -1;
  // The dense writes index this row's columns: y's column, or none when y is another shard's.
  const int64_t ycol = ysel - in.begin >= 0 && ysel - in.begin < V ? ysel - in.begin : -1;

  // The sampled-token term: loss -w rho a (PPO-clipped when clip > 0), gradient -w a rho (e_y - p).
  if (in.adv) {
    const double a = static_cast<double>(in.adv[r]);
    double rho = 1.0;
    if (args.use_ratio) rho = std::exp(lp_y - static_cast<double>(in.logmu[r]));
    const double unclipped = rho * a;
    double value = unclipped;
    bool active = true;
    if (args.use_ratio && args.clip > 0.0f) {
      const double c = static_cast<double>(args.clip);
      const double clipped = std::clamp(rho, 1.0 - c, 1.0 + c) * a;
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

  RowLists L{
      in.sid ? in.sid + r * in.ks : nullptr, in.tid ? in.tid + r * in.kt : nullptr, in.ks, in.kt,
      in.slq ? in.slq + r * in.ks : nullptr, in.tlq ? in.tlq + r * in.kt : nullptr, u,     lse_u};
  if (sharded && u) {  // u holds this shard's columns: the ids' values come carried
    L.sh_ids = in.sh_ids + r * in.sk;
    L.sh_u = in.sh_u + r * in.sk;
    L.sk = in.sk;
  }
  if (in.teacher_topk_from_logits) {
    int32_t* h = in.heap + r * in.kt;
    topk_ids(u, V, in.kt, h);
    L.tid = h;
  }
  int32_t* s_id = in.s_id + r * in.cap;
  double* s_lq = in.s_lq + r * in.cap;
  double* s_lp = in.s_lp + r * in.cap;
  double* s_c = in.s_c + r * in.cap;
  int64_t m = 0;  // support entries (s_id, s_lq, s_lp, s_c)

  auto no_dense = [](int64_t, double, double) { return 0.0; };
  auto lq_at = [&](int64_t j) { return static_cast<double>(u[j]) - lse_u; };

  ObjectiveKind kind = args.kind;
  double beta = static_cast<double>(args.beta);
  if (kind == ObjectiveKind::Jsd && beta <= 0.0) kind = ObjectiveKind::Fkl;      // KL(q || p)
  if (kind == ObjectiveKind::Jsd && beta >= 1.0) kind = ObjectiveKind::FullRkl;  // KL(p || q)

  switch (kind) {
    case ObjectiveKind::PgSampled:
      write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, no_dense);
      break;

    case ObjectiveKind::Sft:
      loss -= w * lp_y;
      pcoef += w;
      ycoef -= w;
      write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, no_dense);
      break;

    case ObjectiveKind::PgTopK: {
      m = build_support(L, args.support, s_id, s_lq);
      if (m > 0) {
        for (int64_t i = 0; i < m; ++i) s_lp[i] = lp_at(s_id[i]);
        const double b = in.baseline ? static_cast<double>(in.baseline[r]) : 0.0;
        const double tw = static_cast<double>(args.teacher_weight);
        double norm = 0.0;
        if (args.weight == SupportWeight::StudentP) norm = lse_d(s_lp, m);
        if (args.weight == SupportWeight::TeacherP) norm = lse_d(s_lq, m);
        double asum = 0.0;
        for (int64_t i = 0; i < m; ++i) {
          double c = 1.0 / static_cast<double>(m);
          if (args.weight == SupportWeight::StudentP) c = std::exp(s_lp[i] - norm);
          if (args.weight == SupportWeight::TeacherP) c = std::exp(s_lq[i] - norm);
          const double a = c > 0.0 ? c * (tw * (s_lq[i] - s_lp[i]) - b) : 0.0;  // sg[c_v r_v]
          asum += a;
          if (a != 0.0) loss -= w * a * s_lp[i];
          s_c[i] = -w * a;
        }
        pcoef += w * asum;
      }
      write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, no_dense);
      write_sparse(dz, m, s_id, s_lp, s_c, pcoef, YTerm{ysel, ycoef}, in.begin, V);
      break;
    }

    case ObjectiveKind::TopKRkl: {
      m = L.ks;
      for (int64_t i = 0; i < m; ++i) {
        s_id[i] = L.sid[i];
        s_lq[i] = L.lq_s(i);
        s_lp[i] = lp_at(s_id[i]);
      }
      const double lps = lse_d(s_lp, m), lqs = lse_d(s_lq, m);
      double kl = 0.0;
      for (int64_t i = 0; i < m; ++i)
        kl += xdiff(std::exp(s_lp[i] - lps), s_lp[i] - lps, s_lq[i] - lqs);
      loss += w * kl;
      for (int64_t i = 0; i < m; ++i) {
        const double pb = std::exp(s_lp[i] - lps);
        s_c[i] = pb > 0.0 ? w * pb * ((s_lp[i] - lps) - (s_lq[i] - lqs) - kl) : 0.0;
      }
      write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, no_dense);
      write_sparse(dz, m, s_id, s_lp, s_c, pcoef, YTerm{ysel, ycoef}, in.begin, V);
      break;
    }

    case ObjectiveKind::FullRkl: {
      double kl = 0.0;
      if (sharded) {
        kl = in.sh_kl_pq[r];
      } else {
        for (int64_t j = 0; j < V; ++j) {
          const double lp = lp_at(j);
          kl += xdiff(std::exp(lp), lp, lq_at(j));
        }
      }
      loss += w * kl;
      write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, [&](int64_t j, double lp, double p) {
        return p > 0.0 ? w * p * ((lp - lq_at(j)) - kl) : 0.0;
      });
      break;
    }

    case ObjectiveKind::Fkl: {
      if (in.mode == Signal::Full) {
        double kl = 0.0;
        if (sharded) {
          kl = in.sh_kl_qp[r];
        } else {
          for (int64_t j = 0; j < V; ++j) {
            const double lq = lq_at(j);
            kl += xdiff(std::exp(lq), lq, lp_at(j));
          }
        }
        loss += w * kl;
        write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef},
                    [&](int64_t j, double, double p) { return w * (p - std::exp(lq_at(j))); });
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
        const double lps = lse_d(s_lp, m), lqs = lse_d(s_lq, m);
        double kl = 0.0;
        for (int64_t i = 0; i < m; ++i) {
          const double lqb = s_lq[i] - lqs, lpb = s_lp[i] - lps;
          kl += xdiff(std::exp(lqb), lqb, lpb);
          s_c[i] = w * (std::exp(lpb) - std::exp(lqb));
        }
        loss += w * kl;
        write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, no_dense);
        write_sparse(dz, m, s_id, s_lp, s_c, pcoef, YTerm{ysel, ycoef}, in.begin, V);
        break;
      }
      // With the tail bucket: KL over the k + 1 buckets (T's tokens and "everything else").
      // p_tail is summed over the complement directly (no 1 - P_T cancellation): sort T's ids
      // into the second half of the support scratch and walk them alongside j.
      double qsum = 0.0;
      for (int64_t i = 0; i < m; ++i) qsum += std::exp(s_lq[i]);
      const double q_tail = std::max(0.0, 1.0 - qsum);
      int32_t* sorted = s_id + m;  // cap >= 2 * kt entries
      std::copy(s_id, s_id + m, sorted);
      std::sort(sorted, sorted + m);
      double p_tail = 0.0;
      if (sharded) {
        p_tail = in.sh_tail[r];  // summed over the complement on every shard
      } else {
        for (int64_t j = 0, t = 0; j < V; ++j) {
          if (t < m && sorted[t] == j) {
            ++t;
            continue;
          }
          p_tail += std::exp(lp_at(j));
        }
      }
      p_tail = std::max(p_tail, kTailFloor);
      double kl = 0.0;
      for (int64_t i = 0; i < m; ++i) kl += xdiff(std::exp(s_lq[i]), s_lq[i], s_lp[i]);
      if (q_tail > 0.0) kl += q_tail * (std::log(q_tail) - std::log(p_tail));
      loss += w * kl;
      // d/dz_j: j in T: w (p_j - q_j); j not in T: w p_j (1 - q_tail / p_tail). The dense pass
      // writes the second form everywhere and the T entries are then rewritten (not corrected:
      // off may be huge when p_tail is at its floor, only j not in T may carry it).
      const double off = w * (1.0 - q_tail / p_tail);
      for (int64_t i = 0; i < m; ++i) s_c[i] = w * (std::exp(s_lp[i]) - std::exp(s_lq[i]));
      write_dense(z, dz, V, lse, pcoef + off, YTerm{ycol, ycoef}, no_dense);
      write_sparse(dz, m, s_id, s_lp, s_c, pcoef, YTerm{ysel, ycoef}, in.begin, V);
      break;
    }

    case ObjectiveKind::Jsd: {
      // 0 < beta < 1: m = beta q + (1 - beta) p in log space; D = beta KL(q||m) + (1-beta)
      // KL(p||m); dD/dz_j = p_j (g_j - sum_i p_i g_i), g_i = (1 - beta)(log p_i - log m_i).
      const double lb = std::log(beta), l1b = std::log1p(-beta);
      auto lm_at = [&](double lq, double lp) { return log_add(lb + lq, l1b + lp); };
      double d = 0.0, pg = 0.0;
      if (sharded) {
        d = in.sh_jsd[r];
        pg = in.sh_jsd_pg[r];
      } else {
        for (int64_t j = 0; j < V; ++j) {
          const double lp = lp_at(j), lq = lq_at(j);
          const double lm = lm_at(lq, lp);
          d += beta * xdiff(std::exp(lq), lq, lm) + (1.0 - beta) * xdiff(std::exp(lp), lp, lm);
          pg += xdiff(std::exp(lp), lp, lm);
        }
        pg *= (1.0 - beta);
      }
      loss += w * d;
      write_dense(z, dz, V, lse, pcoef, YTerm{ycol, ycoef}, [&](int64_t j, double lp, double p) {
        if (!(p > 0.0)) return 0.0;
        const double g = (1.0 - beta) * (lp - lm_at(lq_at(j), lp));
        return w * p * (g - pg);
      });
      break;
    }
  }

  return loss;
}

}  // namespace opd::backend::cpu::objective_math
