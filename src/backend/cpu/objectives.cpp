// CPU objective_rows (backend/ops.hpp, DESIGN.md §4): validates the inputs each objective kind
// and signal mode need, allocates the per-row support scratch once per call, and runs the row
// mathematics of objective_math.hpp once per row (Kokkos; each iteration writes only its row of
// loss, dz and the scratch).
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "backend/cpu/objective_math.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

const char* kind_name(ObjectiveKind k) {
  switch (k) {
    case ObjectiveKind::PgSampled:
      return "pg_sampled";
    case ObjectiveKind::PgTopK:
      return "pg_topk";
    case ObjectiveKind::TopKRkl:
      return "topk_rkl";
    case ObjectiveKind::FullRkl:
      return "full_rkl";
    case ObjectiveKind::Fkl:
      return "fkl";
    case ObjectiveKind::Jsd:
      return "jsd";
    case ObjectiveKind::Sft:
      return "sft";
  }
  return "?";
}

const char* mode_name(Signal s) {
  switch (s) {
    case Signal::Sampled:
      return "sampled";
    case Signal::TopK:
      return "topk";
    case Signal::Full:
      return "full";
  }
  return "?";
}

// A required input of the given kind, dtype and shape.
void require(const char* kind, const char* name, const Tensor& t, DType dtype,
             const core::Shape& shape) {
  OPD_CHECK(t.defined(), "objective_rows (", kind, "): ", name, " is required but undefined");
  OPD_CHECK(t.is_host() && t.dtype() == dtype && t.shape() == shape, "objective_rows (", kind,
            "): ", name, " must be a host ", core::dtype_name(dtype), core::shape_str(shape),
            " tensor, got ", t.describe());
}

// An id list [n, k] (k >= 1) with every id in [0, V) and no id twice in a row.
void check_id_list(const char* kind, const char* name, const Tensor& ids, int64_t n, int64_t V) {
  OPD_CHECK(ids.is_host() && ids.dtype() == DType::I32 && ids.ndim() == 2 && ids.dim(0) == n &&
                ids.dim(1) >= 1,
            "objective_rows (", kind, "): ", name, " must be a host i32[", n,
            ", k] tensor with k >= 1, got ", ids.describe());
  const int64_t k = ids.dim(1);
  const int32_t* p = ids.data<int32_t>();
  int64_t bad = 0;  // rows with an id out of range or repeated
  Kokkos::parallel_reduce(
      "opd::cpu::objective_rows_check_ids", Policy(0, n),
      [=](int64_t r, int64_t& count) {
        const int32_t* row = p + r * k;
        bool ok = true;
        for (int64_t i = 0; i < k && ok; ++i) {
          ok = row[i] >= 0 && row[i] < V;
          for (int64_t j = 0; j < i && ok; ++j) ok = row[j] != row[i];
        }
        count += ok ? 0 : 1;
      },
      bad);
  OPD_CHECK(bad == 0, "objective_rows (", kind, "): ", bad, " row(s) of ", name,
            " hold an id outside [0, ", V, ") or the same id twice");
}

// With a vocabulary shard: the row quantities come from `shard`, whose ids must carry every id
// the kind reads (y, the student's and the teacher's lists).
void attach_shard(const char* kn, const ShardRows& shard, objective_math::ObjectiveRows& in,
                  int64_t n, int64_t V) {
  const Tensor& ids = shard.ids;
  OPD_CHECK(ids.defined() && ids.dtype() == DType::I32 && ids.ndim() == 2 && ids.dim(0) == n &&
                static_cast<int64_t>(shard.lse.size()) == n &&
                static_cast<int64_t>(shard.p_tail.size()) == n &&
                static_cast<int64_t>(shard.z_at.size()) == ids.numel(),
            "objective_rows (", kn, "): shard rows do not match ", n, " rows");
  OPD_CHECK(shard.range.begin >= 0 && shard.range.begin + V <= shard.range.total,
            "objective_rows (", kn, "): shard [", shard.range.begin, ", ", shard.range.begin + V,
            ") of a vocabulary of ", shard.range.total);
  const int64_t K = ids.dim(1);
  const int32_t* ip = ids.data<int32_t>();
  for (int64_t r = 0; r < n; ++r) {
    const int32_t* row = ip + r * K;
    auto carried = [&](int32_t id) { return std::find(row, row + K, id) != row + K; };
    bool ok = !in.y || carried(in.y[r]);
    for (int64_t i = 0; i < in.ks && ok; ++i) ok = carried(in.sid[r * in.ks + i]);
    for (int64_t i = 0; i < in.kt && in.tid && ok; ++i) ok = carried(in.tid[r * in.kt + i]);
    OPD_CHECK(ok, "objective_rows (", kn, "): shard row ", r,
              " does not carry every id the objective reads");
  }
  in.begin = shard.range.begin;
  in.V_all = shard.range.total;
  in.sh_lse = shard.lse.data();
  in.sh_tail = shard.p_tail.data();
  in.sh_ids = ip;
  in.sh_z = shard.z_at.data();
  in.sk = K;
  if (shard.full) {
    OPD_CHECK(static_cast<int64_t>(shard.u_at.size()) == ids.numel() &&
                  static_cast<int64_t>(shard.kl_pq.size()) == n,
              "objective_rows (", kn, "): full-mode shard rows do not match ", n, " rows");
    OPD_CHECK(in.args.kind != ObjectiveKind::Jsd || !(in.args.beta > 0.0f && in.args.beta < 1.0f) ||
                  static_cast<double>(in.args.beta) == shard.beta,
              "objective_rows (jsd): the shard rows were summed at beta = ", shard.beta, ", not ",
              in.args.beta);
    in.sh_lse_u = shard.lse_u.data();
    in.sh_u = shard.u_at.data();
    in.sh_kl_pq = shard.kl_pq.data();
    in.sh_kl_qp = shard.kl_qp.data();
    in.sh_jsd = shard.jsd.data();
    in.sh_jsd_pg = shard.jsd_pg.data();
  }
}

}  // namespace

void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline, const Tensor& w,
                    const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                    const ShardRows* shard) {
  const ObjectiveKind kind = args.kind;
  const char* kn = kind_name(kind);
  const Signal mode = teacher.mode;

  OPD_CHECK(z.defined(), "objective_rows (", kn, "): z is undefined");
  require_f32("objective_rows", "z", z);
  OPD_CHECK(z.ndim() == 2 && z.dim(1) >= 1, "objective_rows (", kn, "): z must be [n, V], got ",
            z.describe());
  const int64_t n = z.dim(0), V = z.dim(1);
  // Ids are global: with a vocabulary shard they index the whole vocabulary, not z's columns.
  const int64_t V_all = shard ? shard->range.total : V;
  OPD_CHECK(!shard || mode != Signal::Full || shard->full, "objective_rows (", kn,
            "): full-mode shard rows (with the teacher's side) are needed");
  require(kn, "loss", loss, DType::F32, {n});
  require(kn, "dz", dz, DType::F32, {n, V});
  require(kn, "w", w, DType::F32, {n});
  OPD_CHECK(args.clip >= 0.0f, "objective_rows (", kn, "): clip = ", args.clip, " must be >= 0");

  // The sampled-token term (the whole loss of pg_sampled, an extra term elsewhere).
  if (kind == ObjectiveKind::PgSampled)
    OPD_CHECK(adv.defined(), "objective_rows (pg_sampled): adv is required but undefined");
  if (adv.defined()) {
    require(kn, "adv", adv, DType::F32, {n});
    if (args.use_ratio) require(kn, "logmu (use_ratio with adv)", logmu, DType::F32, {n});
  }
  const bool need_y = adv.defined() || kind == ObjectiveKind::Sft;
  if (need_y) {
    require(kn, "y", y, DType::I32, {n});
    const int32_t* py = y.data<int32_t>();
    int64_t bad = 0;
    Kokkos::parallel_reduce(
        "opd::cpu::objective_rows_check_y", Policy(0, n),
        [=](int64_t r, int64_t& count) { count += (py[r] < 0 || py[r] >= V_all) ? 1 : 0; }, bad);
    OPD_CHECK(bad == 0, "objective_rows (", kn, "): ", bad, " sampled token(s) y outside [0, ",
              V_all, ")");
  }
  if (baseline.defined()) require(kn, "baseline", baseline, DType::F32, {n});

  objective_math::ObjectiveRows in;
  in.V = V;
  in.z = z.data<float>();
  in.dz = dz.data<float>();
  in.loss = loss.data<float>();
  in.w = w.data<float>();
  in.y = need_y ? y.data<int32_t>() : nullptr;
  in.adv = adv.defined() ? adv.data<float>() : nullptr;
  in.logmu = (adv.defined() && args.use_ratio) ? logmu.data<float>() : nullptr;
  in.baseline =
      (kind == ObjectiveKind::PgTopK && baseline.defined()) ? baseline.data<float>() : nullptr;
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
    require(kn, "teacher.logits", teacher.logits, DType::F32, {n, V});
    in.u = teacher.logits.data<float>();
    OPD_CHECK(!shard || !need_t || teacher.teacher_ids.defined(), "objective_rows (", kn,
              "): with a vocabulary shard the teacher's top-k must be given (teacher_ids)");
    // Full mode: the teacher's top-k is teacher_ids when given, else computed from the logits
    // with k = the student list's k.
    if (need_t && !teacher.teacher_ids.defined()) {
      OPD_CHECK(teacher.student_ids.defined(), "objective_rows (", kn,
                "): full mode needs teacher.teacher_ids or teacher.student_ids (for k) to form "
                "the teacher's top-k");
      topk_from_logits = true;
    }
  }
  if (need_s) {
    OPD_CHECK(teacher.student_ids.defined(), "objective_rows (", kn,
              "): teacher.student_ids is required (", mode_name(mode), " mode) but undefined");
    check_id_list(kn, "teacher.student_ids", teacher.student_ids, n, V_all);
    in.sid = teacher.student_ids.data<int32_t>();
    in.ks = teacher.student_ids.dim(1);
    if (mode == Signal::TopK) {
      require(kn, "teacher.logq_student_ids", teacher.logq_student_ids, DType::F32, {n, in.ks});
      in.slq = teacher.logq_student_ids.data<float>();
    }
  }
  if (need_t) {
    if (topk_from_logits) {
      in.kt = teacher.student_ids.dim(1);
      OPD_CHECK(in.kt <= V, "objective_rows (", kn, "): k = ", in.kt, " exceeds V = ", V);
      in.teacher_topk_from_logits = true;
    } else {
      OPD_CHECK(teacher.teacher_ids.defined(), "objective_rows (", kn,
                "): teacher.teacher_ids is required (", mode_name(mode), " mode) but undefined");
      check_id_list(kn, "teacher.teacher_ids", teacher.teacher_ids, n, V_all);
      in.tid = teacher.teacher_ids.data<int32_t>();
      in.kt = teacher.teacher_ids.dim(1);
      if (mode == Signal::TopK) {
        require(kn, "teacher.logq_teacher_ids", teacher.logq_teacher_ids, DType::F32, {n, in.kt});
        in.tlq = teacher.logq_teacher_ids.data<float>();
      }
    }
  }

  // Scratch, once per call: the support (at most ks + kt entries; the Fkl tail sorts a copy of
  // T after it, hence 2 kt) and the Full-mode teacher top-k.
  in.cap = std::max<int64_t>({in.ks + in.kt, 2 * in.kt, 1});
  const std::size_t cells = static_cast<std::size_t>(n * in.cap);
  std::vector<int32_t> s_id(cells);
  std::vector<double> s_lq(cells), s_lp(cells), s_c(cells);
  std::vector<int32_t> heap(topk_from_logits ? static_cast<std::size_t>(n * in.kt) : 0);
  in.s_id = s_id.data();
  in.s_lq = s_lq.data();
  in.s_lp = s_lp.data();
  in.s_c = s_c.data();
  in.heap = heap.empty() ? nullptr : heap.data();

  if (shard) attach_shard(kn, *shard, in, n, V);

  const objective_math::ObjectiveRows rows = in;
  Kokkos::parallel_for("opd::cpu::objective_rows", Policy(0, n), [=](int64_t r) {
    rows.loss[r] = static_cast<float>(objective_math::objective_row(rows, r));
  });
}

}  // namespace opd::backend::cpu
