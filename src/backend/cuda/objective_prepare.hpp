// objective_rows for the CUDA backend: the CPU backend's checks (backend/cpu/objectives.cpp) and
// the parameter block of objective_row.hpp. z, dz, loss and the teacher's logits live on the
// staging device; id lists, per-row scalars and the shard rows may come from the host (staged).
// The id checks read the lists on the host (O(rows x k)).
#pragma once

#include <algorithm>
#include <string>

#include "backend/cuda/objective_row.hpp"
#include "backend/cuda/staging.hpp"

namespace opd::backend::cuda::rows {

namespace obj_detail {

inline const char* kind_name(ObjectiveKind k) {
  switch (k) {
    case ObjectiveKind::PgSampled: return "pg_sampled";
    case ObjectiveKind::PgTopK: return "pg_topk";
    case ObjectiveKind::TopKRkl: return "topk_rkl";
    case ObjectiveKind::FullRkl: return "full_rkl";
    case ObjectiveKind::Fkl: return "fkl";
    case ObjectiveKind::Jsd: return "jsd";
    case ObjectiveKind::Sft: return "sft";
  }
  return "?";
}

inline const char* mode_name(Signal s) {
  switch (s) {
    case Signal::Sampled: return "sampled";
    case Signal::TopK: return "topk";
    case Signal::Full: return "full";
  }
  return "?";
}

// A required input of the given dtype and shape (on the staging device when on_device).
inline void require(const char* kind, const char* name, const Tensor& t, core::DType dtype,
                    const core::Shape& shape, core::Device dev, bool on_device) {
  OPD_CHECK(t.defined(), "objective_rows (", kind, "): ", name, " is required but undefined");
  OPD_CHECK(t.dtype() == dtype && t.shape() == shape && (!on_device || t.device() == dev),
            "objective_rows (", kind, "): ", name, " must be a ", core::dtype_name(dtype),
            core::shape_str(shape), " tensor", on_device ? " on the device of z" : "", ", got ",
            t.describe());
}

// An id list [n, k] (k >= 1) with every id in [0, V) and no id twice in a row; its host copy.
inline std::vector<int32_t> check_id_list(Staging& st, const char* kind, const char* name,
                                          const Tensor& ids, int64_t n, int64_t V) {
  OPD_CHECK(ids.dtype() == core::DType::I32 && ids.ndim() == 2 && ids.dim(0) == n &&
                ids.dim(1) >= 1,
            "objective_rows (", kind, "): ", name, " must be an i32[", n,
            ", k] tensor with k >= 1, got ", ids.describe());
  const int64_t k = ids.dim(1);
  const std::vector<int32_t> p = st.host<int32_t>(ids);
  int64_t bad = 0;
  for (int64_t r = 0; r < n; ++r) {
    const int32_t* row = p.data() + r * k;
    bool ok = true;
    for (int64_t i = 0; i < k && ok; ++i) {
      ok = row[i] >= 0 && row[i] < V;
      for (int64_t j = 0; j < i && ok; ++j) ok = row[j] != row[i];
    }
    bad += ok ? 0 : 1;
  }
  OPD_CHECK(bad == 0, "objective_rows (", kind, "): ", bad, " row(s) of ", name,
            " hold an id outside [0, ", V, ") or the same id twice");
  return p;
}

}  // namespace obj_detail

inline ObjParams prepare_objective(Staging& st, const Tensor& z, const TeacherRows& teacher,
                                   const Tensor& y, const Tensor& logmu, const Tensor& adv,
                                   const Tensor& baseline, const Tensor& w,
                                   const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                                   const ShardRows* shard) {
  using namespace obj_detail;
  using core::DType;
  const core::Device dev = st.device();
  const ObjectiveKind kind = args.kind;
  const char* kn = kind_name(kind);
  const Signal mode = teacher.mode;

  OPD_CHECK(z.defined(), "objective_rows (", kn, "): z is undefined");
  OPD_CHECK(z.dtype() == DType::F32 && z.device() == dev && z.ndim() == 2 && z.dim(1) >= 1,
            "objective_rows (", kn, "): z must be f32 [n, V] on ", core::device_name(dev),
            ", got ", z.describe());
  const int64_t n = z.dim(0), V = z.dim(1);
  const int64_t V_all = shard ? shard->range.total : V;  // ids are global
  OPD_CHECK(!shard || mode != Signal::Full || shard->full, "objective_rows (", kn,
            "): full-mode shard rows (with the teacher's side) are needed");
  require(kn, "loss", loss, DType::F32, {n}, dev, true);
  require(kn, "dz", dz, DType::F32, {n, V}, dev, true);
  require(kn, "w", w, DType::F32, {n}, dev, false);
  OPD_CHECK(args.clip >= 0.0f, "objective_rows (", kn, "): clip = ", args.clip, " must be >= 0");

  if (kind == ObjectiveKind::PgSampled)
    OPD_CHECK(adv.defined(), "objective_rows (pg_sampled): adv is required but undefined");
  if (adv.defined()) {
    require(kn, "adv", adv, DType::F32, {n}, dev, false);
    if (args.use_ratio) require(kn, "logmu (use_ratio with adv)", logmu, DType::F32, {n}, dev, false);
  }
  const bool need_y = adv.defined() || kind == ObjectiveKind::Sft;
  std::vector<int32_t> yh;
  if (need_y) {
    require(kn, "y", y, DType::I32, {n}, dev, false);
    yh = st.host<int32_t>(y);
    int64_t bad = 0;
    for (int32_t v : yh) bad += (v < 0 || v >= V_all) ? 1 : 0;
    OPD_CHECK(bad == 0, "objective_rows (", kn, "): ", bad, " sampled token(s) y outside [0, ",
              V_all, ")");
  }
  if (baseline.defined()) require(kn, "baseline", baseline, DType::F32, {n}, dev, false);

  ObjParams in;
  in.V = V;
  in.z = z.data<float>();
  in.dz = dz.data<float>();
  in.loss = loss.data<float>();
  in.w = st.in<float>(w);
  in.y = need_y ? st.in<int32_t>(y) : nullptr;
  in.adv = adv.defined() ? st.in<float>(adv) : nullptr;
  in.logmu = (adv.defined() && args.use_ratio) ? st.in<float>(logmu) : nullptr;
  in.baseline =
      (kind == ObjectiveKind::PgTopK && baseline.defined()) ? st.in<float>(baseline) : nullptr;
  in.mode = mode;
  in.args = args;

  // What the kind needs from the teacher.
  const bool teacher_free = kind == ObjectiveKind::PgSampled || kind == ObjectiveKind::Sft;
  bool need_s = false, need_t = false;
  if (!teacher_free) {
    OPD_CHECK(mode != Signal::Sampled, "objective_rows (", kn,
              "): the sampled signal mode only gives log q(y); this objective needs the topk or "
              "full signal");
    if (kind == ObjectiveKind::FullRkl || kind == ObjectiveKind::Jsd)
      OPD_CHECK(mode == Signal::Full, "objective_rows (", kn, "): needs the full signal mode, got ",
                mode_name(mode));
    if (kind == ObjectiveKind::Jsd)
      OPD_CHECK(args.beta >= 0.0f && args.beta <= 1.0f, "objective_rows (jsd): beta = ", args.beta,
                " must be in [0, 1]");
    if (kind == ObjectiveKind::TopKRkl) need_s = true;
    if (kind == ObjectiveKind::Fkl && mode == Signal::TopK) need_t = true;
    if (kind == ObjectiveKind::PgTopK) {
      need_s = args.support != Support::Teacher;
      need_t = args.support != Support::Student;
    }
  }
  bool topk_from_logits = false;
  if (mode == Signal::Full && !teacher_free) {
    require(kn, "teacher.logits", teacher.logits, DType::F32, {n, V}, dev, true);
    in.u = teacher.logits.data<float>();
    OPD_CHECK(!shard || !need_t || teacher.teacher_ids.defined(), "objective_rows (", kn,
              "): with a vocabulary shard the teacher's top-k must be given (teacher_ids)");
    if (need_t && !teacher.teacher_ids.defined()) {
      OPD_CHECK(teacher.student_ids.defined(), "objective_rows (", kn,
                "): full mode needs teacher.teacher_ids or teacher.student_ids (for k) to form "
                "the teacher's top-k");
      topk_from_logits = true;
    }
  }
  std::vector<int32_t> sh, th;  // the lists on the host, for the shard's check
  if (need_s) {
    OPD_CHECK(teacher.student_ids.defined(), "objective_rows (", kn,
              "): teacher.student_ids is required (", mode_name(mode), " mode) but undefined");
    sh = check_id_list(st, kn, "teacher.student_ids", teacher.student_ids, n, V_all);
    in.sid = st.in<int32_t>(teacher.student_ids);
    in.ks = teacher.student_ids.dim(1);
    if (mode == Signal::TopK) {
      require(kn, "teacher.logq_student_ids", teacher.logq_student_ids, DType::F32, {n, in.ks},
              dev, false);
      in.slq = st.in<float>(teacher.logq_student_ids);
    }
  }
  if (need_t) {
    if (topk_from_logits) {
      in.kt = teacher.student_ids.dim(1);
      OPD_CHECK(in.kt <= V, "objective_rows (", kn, "): k = ", in.kt,
                " exceeds V = ", V);
      in.teacher_topk_from_logits = true;
    } else {
      OPD_CHECK(teacher.teacher_ids.defined(), "objective_rows (", kn,
                "): teacher.teacher_ids is required (", mode_name(mode), " mode) but undefined");
      th = check_id_list(st, kn, "teacher.teacher_ids", teacher.teacher_ids, n, V_all);
      in.tid = st.in<int32_t>(teacher.teacher_ids);
      in.kt = teacher.teacher_ids.dim(1);
      if (mode == Signal::TopK) {
        require(kn, "teacher.logq_teacher_ids", teacher.logq_teacher_ids, DType::F32, {n, in.kt},
                dev, false);
        in.tlq = st.in<float>(teacher.logq_teacher_ids);
      }
    }
  }

  // Scratch: the support (at most ks + kt entries; Fkl's tail sorts a copy of T after it, hence
  // 2 kt) and the Full-mode teacher top-k.
  in.cap = std::max<int64_t>({in.ks + in.kt, 2 * in.kt, 1});
  in.s_id = st.scratch<int32_t>(n * in.cap);
  in.s_lq = st.scratch<double>(n * in.cap);
  in.s_lp = st.scratch<double>(n * in.cap);
  in.s_c = st.scratch<double>(n * in.cap);
  if (topk_from_logits) in.heap = st.scratch<int32_t>(n * in.kt);

  if (shard) {  // the row quantities come from the shard rows, which must carry every id read
    const Tensor& ids = shard->ids;
    OPD_CHECK(ids.defined() && ids.dtype() == DType::I32 && ids.ndim() == 2 && ids.dim(0) == n &&
                  static_cast<int64_t>(shard->lse.size()) == n &&
                  static_cast<int64_t>(shard->p_tail.size()) == n &&
                  static_cast<int64_t>(shard->z_at.size()) == ids.numel(),
              "objective_rows (", kn, "): shard rows do not match ", n, " rows");
    OPD_CHECK(shard->range.begin >= 0 && shard->range.begin + V <= shard->range.total,
              "objective_rows (", kn, "): shard [", shard->range.begin, ", ",
              shard->range.begin + V, ") of a vocabulary of ", shard->range.total);
    const int64_t K = ids.dim(1);
    const std::vector<int32_t> ip = st.host<int32_t>(ids);
    for (int64_t r = 0; r < n; ++r) {
      const int32_t* row = ip.data() + r * K;
      auto has = [&](int32_t id) { return std::find(row, row + K, id) != row + K; };
      bool ok = !need_y || has(yh[r]);
      for (int64_t i = 0; i < in.ks && ok; ++i) ok = has(sh[r * in.ks + i]);
      for (int64_t i = 0; i < in.kt && !th.empty() && ok; ++i) ok = has(th[r * in.kt + i]);
      OPD_CHECK(ok, "objective_rows (", kn, "): shard row ", r,
                " does not carry every id the objective reads");
    }
    in.begin = shard->range.begin;
    in.sh_lse = st.in(shard->lse);
    in.sh_tail = st.in(shard->p_tail);
    in.sh_ids = st.in<int32_t>(ids);
    in.sh_z = st.in(shard->z_at);
    in.sk = K;
    if (shard->full) {
      OPD_CHECK(static_cast<int64_t>(shard->u_at.size()) == ids.numel() &&
                    static_cast<int64_t>(shard->lse_u.size()) == n &&
                    static_cast<int64_t>(shard->kl_pq.size()) == n &&
                    static_cast<int64_t>(shard->kl_qp.size()) == n &&
                    static_cast<int64_t>(shard->jsd.size()) == n &&
                    static_cast<int64_t>(shard->jsd_pg.size()) == n,
                "objective_rows (", kn, "): full-mode shard rows do not match ", n, " rows");
      OPD_CHECK(kind != ObjectiveKind::Jsd || !(args.beta > 0.0f && args.beta < 1.0f) ||
                    static_cast<double>(args.beta) == shard->beta,
                "objective_rows (jsd): the shard rows were summed at beta = ", shard->beta,
                ", not ", args.beta);
      in.sh_lse_u = st.in(shard->lse_u);
      in.sh_u = st.in(shard->u_at);
      in.sh_kl_pq = st.in(shard->kl_pq);
      in.sh_kl_qp = st.in(shard->kl_qp);
      in.sh_jsd = st.in(shard->jsd);
      in.sh_jsd_pg = st.in(shard->jsd_pg);
    }
  }
  return in;
}

}  // namespace opd::backend::cuda::rows
