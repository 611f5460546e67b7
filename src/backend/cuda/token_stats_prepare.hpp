// token_stats for the CUDA backend: the CPU backend's checks (backend/cpu/token_stats.cpp) and
// the parameter block of token_stats_row.hpp. z, the teacher's logits and the outputs live on the
// staging device; id lists, per-row scalars and the shard rows may come from the host (staged).
#pragma once

#include <algorithm>

#include "backend/cuda/staging.hpp"
#include "backend/cuda/token_stats_row.hpp"

namespace opd::backend::cuda::rows {

namespace stats_detail {

constexpr const char* kOp = "token_stats";

inline void check_tensor(const char* name, const Tensor& t, const core::Shape& shape,
                         core::DType dtype) {
  OPD_CHECK(t.defined(), kOp, ": ", name, " must be a defined tensor");
  OPD_CHECK(t.dtype() == dtype && t.shape() == shape, kOp, ": ", name, " must be ",
            core::dtype_name(dtype), core::shape_str(shape), ", got ", t.describe());
}

inline void check_on(const char* name, const Tensor& t, core::Device dev) {
  OPD_CHECK(t.device() == dev, kOp, ": ", name, " must be on ", core::device_name(dev), ", got ",
            t.describe());
}

inline void check_ids(Staging& st, const char* name, const Tensor& ids, int64_t V) {
  const std::vector<int32_t> p = st.host<int32_t>(ids);
  for (std::size_t i = 0; i < p.size(); ++i)
    OPD_CHECK(p[i] >= 0 && p[i] < V, kOp, ": ", name, "[", i, "] = ", p[i],
              " is outside the vocabulary [0, ", V, ")");
}

}  // namespace stats_detail

inline StatsParams prepare_token_stats(Staging& st, const Tensor& z, const TeacherRows& teacher,
                                       const Tensor& y, int diag_k, TokenStats& out,
                                       const ShardRows* shard) {
  using namespace stats_detail;
  using core::DType;
  const core::Device dev = st.device();
  OPD_CHECK(z.defined() && z.dtype() == DType::F32 && z.ndim() == 2, kOp,
            ": z must be f32 [n, V], got ", z.describe());
  check_on("z", z, dev);
  const int64_t n = z.dim(0), V = z.dim(1);
  OPD_CHECK(V >= 1, kOp, ": empty vocabulary");
  check_tensor("y", y, {n}, DType::I32);
  const std::vector<int32_t> yh = st.host<int32_t>(y);

  StatsParams P;
  P.mode = teacher.mode;
  P.V = V;
  P.z = z.data<float>();
  P.y = st.in<int32_t>(y);

  // With a vocabulary shard, ids are global and the row quantities come from `shard`
  // (ids column 0 is y, columns 1..k the student's ids).
  std::vector<int32_t> shard_ids;
  if (shard) {
    const Tensor& ids = shard->ids;
    OPD_CHECK(ids.defined() && ids.dtype() == DType::I32 && ids.ndim() == 2 && ids.dim(0) == n &&
                  static_cast<int64_t>(shard->lse.size()) == n &&
                  static_cast<int64_t>(shard->entropy.size()) == n &&
                  static_cast<int64_t>(shard->z_at.size()) == ids.numel(),
              kOp, ": shard rows do not match ", n, " rows");
    const int64_t K = ids.dim(1);
    const bool with_s = teacher.mode == Signal::TopK && teacher.student_ids.defined();
    const int64_t ks = with_s ? teacher.student_ids.dim(1) : 0;
    OPD_CHECK(K >= 1 + ks, kOp, ": shard rows hold ", K, " ids, need y and ", ks, " student ids");
    shard_ids = st.host<int32_t>(ids);
    const std::vector<int32_t> sp =
        with_s ? st.host<int32_t>(teacher.student_ids) : std::vector<int32_t>();
    OPD_CHECK(!with_s || static_cast<int64_t>(sp.size()) == n * ks, kOp,
              ": teacher.student_ids must be [", n, ", k], got ", teacher.student_ids.describe());
    for (int64_t r = 0; r < n; ++r) {
      OPD_CHECK(shard_ids[r * K] == yh[r], kOp, ": shard row ", r, " is not for token ", yh[r]);
      for (int64_t i = 0; i < ks; ++i)
        OPD_CHECK(shard_ids[r * K + 1 + i] == sp[r * ks + i], kOp, ": shard row ", r,
                  " does not hold the student's ids");
    }
    P.sh_lse = st.in(shard->lse);
    P.sh_entropy = st.in(shard->entropy);
    P.sh_z = st.in(shard->z_at);
    P.K = K;
  }
  const int64_t V_all = shard ? shard->range.total : V;
  check_ids(st, "y", y, V_all);

  const char* names[10] = {"logp_y",       "entropy_p",     "logq_y",         "entropy_q",
                           "kl_full",      "kl_topk",       "overlap_ratio",  "overlap_mass_p",
                           "overlap_mass_q", "overlap_adv"};
  Tensor* outs[10] = {&out.logp_y,        &out.entropy_p,     &out.logq_y,         &out.entropy_q,
                      &out.kl_full,       &out.kl_topk,       &out.overlap_ratio,  &out.overlap_mass_p,
                      &out.overlap_mass_q, &out.overlap_adv};
  for (int o = 0; o < 10; ++o) {  // the caller asks for an output by allocating it
    if (!outs[o]->defined()) continue;
    check_tensor(names[o], *outs[o], {n}, DType::F32);
    check_on(names[o], *outs[o], dev);
    P.out[o] = outs[o]->data<float>();
  }
  const bool overlap = P.overlap();

  switch (teacher.mode) {
    case Signal::Sampled:
      if (P.out[kLogqY]) {
        check_tensor("teacher.logq_y", teacher.logq_y, {n}, DType::F32);
        P.tq_y = st.in<float>(teacher.logq_y);
      }
      if (P.out[kEntropyQ] && teacher.entropy_q.defined()) {
        check_tensor("teacher.entropy_q", teacher.entropy_q, {n}, DType::F32);
        P.tq_h = st.in<float>(teacher.entropy_q);
      }
      return P;

    case Signal::TopK: {
      const bool need_student = P.out[kLogqY] || P.out[kKlTopk] || overlap;
      const bool need_teacher = overlap || (P.out[kLogqY] && teacher.teacher_ids.defined());
      if (need_student) {
        OPD_CHECK(teacher.student_ids.defined() && teacher.student_ids.ndim() == 2, kOp,
                  ": TopK mode needs teacher.student_ids [n, k]");
        P.kp = teacher.student_ids.dim(1);
        OPD_CHECK(P.kp >= 1, kOp, ": teacher.student_ids has no columns");
        check_tensor("teacher.student_ids", teacher.student_ids, {n, P.kp}, DType::I32);
        check_tensor("teacher.logq_student_ids", teacher.logq_student_ids, {n, P.kp}, DType::F32);
        check_ids(st, "teacher.student_ids", teacher.student_ids, V_all);
        P.sid = st.in<int32_t>(teacher.student_ids);
        P.lqs = st.in<float>(teacher.logq_student_ids);
      }
      if (need_teacher) {
        OPD_CHECK(teacher.teacher_ids.defined() && teacher.teacher_ids.ndim() == 2, kOp,
                  ": TopK mode needs teacher.teacher_ids [n, k] for the overlap statistics");
        P.kq = teacher.teacher_ids.dim(1);
        check_tensor("teacher.teacher_ids", teacher.teacher_ids, {n, P.kq}, DType::I32);
        check_tensor("teacher.logq_teacher_ids", teacher.logq_teacher_ids, {n, P.kq}, DType::F32);
        check_ids(st, "teacher.teacher_ids", teacher.teacher_ids, V_all);
        P.tid = st.in<int32_t>(teacher.teacher_ids);
        P.lqt = st.in<float>(teacher.logq_teacher_ids);
      }
      OPD_CHECK(!shard || !need_student || shard->student_k == P.kp, kOp, ": the shard rows carry ",
                shard ? shard->student_k : 0, " student ids, not ", P.kp);
      if (overlap) P.pos = st.scratch<int32_t>(n * P.kp);
      return P;
    }

    case Signal::Full: {
      check_tensor("teacher.logits", teacher.logits, {n, V}, DType::F32);
      const bool need_sets = P.out[kKlTopk] || overlap;
      if (shard) {
        const ShardRows& sh = *shard;
        OPD_CHECK(sh.full, kOp, ": full mode needs full-mode shard rows (with the teacher's side)");
        const int64_t K = sh.ids.dim(1);
        OPD_CHECK(static_cast<int64_t>(sh.lse_u.size()) == n &&
                      static_cast<int64_t>(sh.entropy_u.size()) == n &&
                      static_cast<int64_t>(sh.kl_pq.size()) == n &&
                      static_cast<int64_t>(sh.u_at.size()) == n * K,
                  kOp, ": full-mode shard rows do not match ", n, " rows");
        const int64_t k = need_sets ? std::min<int64_t>(diag_k, V_all) : 0;
        const int64_t c_p = 1 + sh.student_k + sh.teacher_k, c_q = c_p + sh.top_k;
        OPD_CHECK(!need_sets || (diag_k >= 1 && sh.top_k == k && c_q + k <= K), kOp,
                  ": the shard rows carry top-", sh.top_k, " lists, the diagnostics need top-", k);
        P.k = k;
        P.c_p = c_p;
        P.c_q = c_q;
        P.sh_ids = st.in<int32_t>(sh.ids);
        P.sh_lse_u = st.in(sh.lse_u);
        P.sh_entropy_u = st.in(sh.entropy_u);
        P.sh_u = st.in(sh.u_at);
        P.sh_kl = st.in(sh.kl_pq);
        if (overlap) P.sets = st.scratch<int32_t>(n * k);
        return P;
      }
      check_on("teacher.logits", teacher.logits, dev);
      P.x = teacher.logits.data<float>();
      if (need_sets) {
        OPD_CHECK(diag_k >= 1, kOp, ": diag_k = ", diag_k, " must be >= 1");
        P.k = std::min<int64_t>(diag_k, V);  // a smaller vocabulary: every id in both sets
        P.sets = st.scratch<int32_t>(n * 2 * P.k);
      }
      return P;
    }
  }
  OPD_CHECK(false, kOp, ": unknown signal mode ", static_cast<int>(teacher.mode));
  return P;
}

}  // namespace opd::backend::cuda::rows
