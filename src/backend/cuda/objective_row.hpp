// objective_rows for the CUDA backend (backend/ops.hpp, DESIGN.md §4), one block per row: the
// row's code (device, or the host emulation test); objective_prepare.hpp checks the inputs and
// fills the parameter block.
//
// The mathematics is the CPU backend's (backend/cpu/objective_math.hpp), in double, split into
// phases around block barriers:
//   1. all threads: the row's log-normalisers, the teacher's top-k when it comes from its logits,
//      and the sums over the vocabulary the kind needs (KL, JSD);
//   2. thread 0: the sampled-token term and the support lists over k entries, serially, exactly
//      as the CPU does, leaving the dense gradient's coefficients in block-shared memory;
//   3. all threads (Fkl's tail bucket only): p of the ids outside the teacher's list;
//   4. all threads: dz_j = pcoef p_j + dense_j (+ ycoef at y) for every column;
//   5. all threads: the support entries rewritten.
// Every value read from z is read before phase 4 writes dz, so dz may alias z.
#pragma once

#include "backend/cuda/objective_serial.hpp"
#include "backend/cuda/row_select.hpp"

namespace opd::backend::cuda::rows {

template <class Blk>
OPD_ROW void objective_row(Blk& b, const ObjParams& in, int64_t r) {
  const int64_t V = in.V;
  const float* z = in.z + r * V;
  float* dz = in.dz + r * V;
  const bool sharded = in.sharded();
  const float* u = in.u ? in.u + r * V : nullptr;

  // Phase 1.
  const double lse = sharded ? in.sh_lse[r] : row_lse(b, z, V);
  const double lse_u = u ? (sharded ? in.sh_lse_u[r] : row_lse(b, u, V)) : 0.0;
  ObjectiveKind kind = in.args.kind;
  double beta = double(in.args.beta);
  if (kind == ObjectiveKind::Jsd && beta <= 0.0) kind = ObjectiveKind::Fkl;      // KL(q || p)
  if (kind == ObjectiveKind::Jsd && beta >= 1.0) kind = ObjectiveKind::FullRkl;  // KL(p || q)
  if (in.teacher_topk_from_logits && in.kt > 0) select_topk(b, u, V, in.kt, in.heap + r * in.kt);
  const double lb = kind == ObjectiveKind::Jsd ? log(beta) : 0.0;
  const double l1b = kind == ObjectiveKind::Jsd ? log1p(-beta) : 0.0;
  auto lm_at = [&](double lq, double lp) { return log_add(lb + lq, l1b + lp); };
  double vsum = 0.0, vsum2 = 0.0;
  if (!sharded) {
    if (kind == ObjectiveKind::FullRkl) {
      for (int64_t j = b.tid(); j < V; j += b.size()) {
        const double lp = double(z[j]) - lse;
        vsum += xdiff(exp(lp), lp, double(u[j]) - lse_u);
      }
      vsum = b.sum(vsum);
    } else if (kind == ObjectiveKind::Fkl && in.mode == Signal::Full) {
      for (int64_t j = b.tid(); j < V; j += b.size()) {
        const double lq = double(u[j]) - lse_u;
        vsum += xdiff(exp(lq), lq, double(z[j]) - lse);
      }
      vsum = b.sum(vsum);
    } else if (kind == ObjectiveKind::Jsd) {
      for (int64_t j = b.tid(); j < V; j += b.size()) {
        const double lp = double(z[j]) - lse, lq = double(u[j]) - lse_u;
        const double lm = lm_at(lq, lp);
        vsum += beta * xdiff(exp(lq), lq, lm) + (1.0 - beta) * xdiff(exp(lp), lp, lm);
        vsum2 += xdiff(exp(lp), lp, lm);
      }
      vsum = b.sum(vsum);
      vsum2 = b.sum(vsum2) * (1.0 - beta);
    }
  }

  // Phase 2.
  ObjState* S = b.template shared<ObjState>();
  if (b.tid() == 0) objective_serial(in, r, lse, lse_u, kind, vsum, vsum2, *S);
  b.sync();

  // Phase 3 (the barrier: every thread reads the flag before thread 0 writes *S again).
  const bool tail_pending = S->tail_pending;
  b.sync();
  if (tail_pending) {
    double p_tail = 0.0;
    if (sharded) {
      p_tail = in.sh_tail[r];  // summed over the complement on every shard
    } else {
      const int32_t* sorted = in.s_id + r * in.cap + S->m;
      for (int64_t j = b.tid(); j < V; j += b.size())
        if (!sorted_contains(sorted, S->m, j)) p_tail += exp(double(z[j]) - lse);
      p_tail = b.sum(p_tail);
    }
    if (b.tid() == 0) finish_tail(in, r, p_tail, *S);
    b.sync();
  }

  // Phase 4.
  const double pcoef = S->dense_pcoef, ycoef = S->ycoef, a = S->a, w = S->w;
  const int64_t ycol = S->ycol;
  const int dense = S->dense;
  for (int64_t j = b.tid(); j < V; j += b.size()) {
    const double lp = double(z[j]) - lse;
    const double p = exp(lp);
    double g = pcoef * p;
    if (dense == kDenseRkl) {
      g += p > 0.0 ? w * p * ((lp - (double(u[j]) - lse_u)) - a) : 0.0;
    } else if (dense == kDenseFkl) {
      g += w * (p - exp(double(u[j]) - lse_u));
    } else if (dense == kDenseJsd && p > 0.0) {
      const double gj = (1.0 - beta) * (lp - lm_at(double(u[j]) - lse_u, lp));
      g += w * p * (gj - a);
    }
    if (j == ycol) g += ycoef;
    dz[j] = float(g);
  }
  b.sync();

  // Phase 5: the support entries (distinct ids; another shard's are skipped).
  const int32_t* s_id = in.s_id + r * in.cap;
  const double* s_lp = in.s_lp + r * in.cap;
  const double* s_c = in.s_c + r * in.cap;
  const double sp_coef = S->pcoef;
  const int64_t ysel = S->ysel;
  for (int64_t i = b.tid(); i < S->m; i += b.size()) {
    const int64_t j = int64_t(s_id[i]) - in.begin;
    if (j < 0 || j >= V) continue;
    double g = sp_coef * exp(s_lp[i]) + s_c[i];
    if (s_id[i] == ysel) g += ycoef;
    dz[j] = float(g);
  }
  if (b.tid() == 0) in.loss[r] = float(S->loss);
}

}  // namespace opd::backend::cuda::rows
