#include "distill/response_logits.hpp"

#include <algorithm>

#include "model/lm_loss.hpp"
#include "parallel/vocab_parallel.hpp"

namespace opd::distill {

namespace ops = opd::backend;

std::vector<RowGroup> row_groups(const RolloutBatch& rb, int64_t n) {
  const int64_t B = rb.batch();
  n = std::max<int64_t>(1, std::min(n, B));
  std::vector<RowGroup> out;
  int64_t r = 0;
  for (int64_t g = 0; g < n; ++g) {
    RowGroup grp;
    grp.b0 = B * g / n;
    grp.b1 = B * (g + 1) / n;
    grp.r0 = r;
    while (r < rb.num_rows() && rb.row_seq[static_cast<std::size_t>(r)] < grp.b1) ++r;
    grp.r1 = r;
    out.push_back(grp);
  }
  return out;
}

backend::TeacherRows slice_rows(const backend::TeacherRows& t, int64_t r0, int64_t r1) {
  auto cut = [&](const Tensor& x) { return x.defined() ? x.slice(r0, r1) : Tensor(); };
  backend::TeacherRows s;
  s.mode = t.mode;
  s.logq_y = cut(t.logq_y);
  s.entropy_q = cut(t.entropy_q);
  s.student_ids = cut(t.student_ids);
  s.logq_student_ids = cut(t.logq_student_ids);
  s.teacher_ids = cut(t.teacher_ids);
  s.logq_teacher_ids = cut(t.logq_teacher_ids);
  return s;
}

ResponseLogits::ResponseLogits(model::Transformer& student, const RolloutBatch& rb,
                               const RowGroup& group, const ScoreReply& teacher,
                               const DistillConfig& cfg, bool keep_activations, int slot)
    : teacher_(teacher), student_(student), group_(group), rows_per_block_(cfg.rows_per_block) {
  const int64_t n = group.rows(), T = rb.seq_len(), V = student.config().vocab_size;
  const Tensor ids = rb.ids.slice(group.b0, group.b1);
  const Tensor& h = student.forward(ids, model::causal_positions(group.b1 - group.b0, T),
                                    keep_activations, nullptr, slot);
  if (!has_rows()) return;
  std::vector<int32_t> local(rb.rows.begin() + group.r0, rb.rows.begin() + group.r1);
  for (int32_t& r : local) r -= static_cast<int32_t>(group.b0 * T);
  // The hidden rows and the logits blocks live on the student's device; y and the per-row
  // results stay on the host (the ops stage them, O(rows)).
  const core::Device dev = student.device();
  rows = ops::on_device(Tensor::from_vector(local, {n}), dev);
  y = Tensor::from_vector(
      std::vector<int32_t>(rb.targets.begin() + group.r0, rb.targets.begin() + group.r1), {n});
  h_r = Tensor::empty({n, student.config().d_model}, core::DType::F32, dev);
  if (n > 0) ops::embedding_forward(h, rows, h_r);  // gather the response positions
  full_ = teacher.signal.mode == backend::Signal::Full;
  sharded_ = student.tensor_parallel().size() > 1;
  const int64_t columns = sharded_ ? V / student.tensor_parallel().size() : V;
  z_block_ = Tensor::empty({rows_per_block_, columns}, core::DType::F32, dev);
  dz_block_ = Tensor::empty({rows_per_block_, columns}, core::DType::F32, dev);
  if (full_) u_block_ = Tensor::empty({rows_per_block_, columns}, core::DType::F32, dev);
  diag_k_ = cfg.diag_k;
  beta_ = static_cast<float>(cfg.objective.beta);  // as the objective sees it (ObjectiveArgs)
}

Tensor ResponseLogits::dz_scratch(int64_t rows) { return dz_block_.slice(0, rows); }

void ResponseLogits::block(int64_t a, int64_t b, LogitsBlock& out) {
  out.z = z_block_.slice(0, b - a);
  out.tr = slice_rows(teacher_.signal, group_.r0 + a, group_.r0 + b);
  out.shard = nullptr;
  if (!sharded_) {
    student_.logits(h_r.slice(a, b), out.z);  // whole rows (gathered over vocabulary shards)
    if (full_) {
      out.tr.logits = u_block_.slice(0, b - a);
      teacher_logits_block(teacher_, group_.r0 + a, group_.r0 + b, out.tr.logits);
    }
    return;
  }
  // This rank's columns, and the rows' ids whose logits the objectives read: y, the student's
  // top-k, the teacher's top-k (whose complement is the fkl tail); in Full mode the teacher's
  // logits on the same columns.
  student_.shard_logits(h_r.slice(a, b), out.z);
  if (full_) {
    out.tr.logits = u_block_.slice(0, b - a);
    teacher_logits_shard(teacher_, group_.r0 + a, group_.r0 + b, student_.vocab_range(),
                         out.tr.logits);
  }
  const Tensor& s = out.tr.student_ids;
  const Tensor& t = out.tr.teacher_ids;
  const int64_t n = b - a, ks = s.defined() ? s.dim(1) : 0, kt = t.defined() ? t.dim(1) : 0;
  const int64_t K = 1 + ks + kt;
  Tensor ids = Tensor::empty({n, K}, core::DType::I32);
  int32_t* ip = ids.data<int32_t>();
  for (int64_t r = 0; r < n; ++r) {
    ip[r * K] = y.data<int32_t>()[a + r];
    for (int64_t i = 0; i < ks; ++i) ip[r * K + 1 + i] = s.data<int32_t>()[r * ks + i];
    for (int64_t i = 0; i < kt; ++i) ip[r * K + 1 + ks + i] = t.data<int32_t>()[r * kt + i];
  }
  const int64_t V = student_.config().vocab_size;
  shard_rows_ = parallel::vocab_parallel_rows(
      out.z, student_.vocab_range(), ids, kt > 0 ? &t : nullptr, ks, kt,
      student_.tensor_parallel(), full_ ? &out.tr.logits : nullptr,
      full_ ? std::min<int64_t>(diag_k_, V) : 0, beta_);
  out.shard = &shard_rows_;
}

void ResponseLogits::block_backward(int64_t a, int64_t b, const Tensor& d_z, Tensor& d_h_rows) {
  if (sharded_) student_.shard_logits_backward(h_r.slice(a, b), d_z, d_h_rows);
  else student_.logits_backward(h_r.slice(a, b), d_z, d_h_rows);
}

backend::TokenStats token_statistics(ResponseLogits& logits, const ScoreReply& teacher,
                                     int diag_k) {
  const int64_t M = logits.group().rows(), RB = logits.rows_per_block();
  ops::TokenStats st;
  for (Tensor* t : {&st.logp_y, &st.entropy_p, &st.logq_y, &st.entropy_q, &st.kl_full, &st.kl_topk,
                    &st.overlap_ratio, &st.overlap_mass_p, &st.overlap_mass_q, &st.overlap_adv})
    *t = Tensor::empty({M});
  for (int64_t r0 = 0; r0 < M; r0 += RB) {
    const int64_t r1 = std::min(M, r0 + RB);
    LogitsBlock blk;
    logits.block(r0, r1, blk);
    ops::TokenStats sb;
    sb.logp_y = st.logp_y.slice(r0, r1);
    sb.entropy_p = st.entropy_p.slice(r0, r1);
    sb.logq_y = st.logq_y.slice(r0, r1);
    sb.entropy_q = st.entropy_q.slice(r0, r1);
    sb.kl_full = st.kl_full.slice(r0, r1);
    sb.kl_topk = st.kl_topk.slice(r0, r1);
    sb.overlap_ratio = st.overlap_ratio.slice(r0, r1);
    sb.overlap_mass_p = st.overlap_mass_p.slice(r0, r1);
    sb.overlap_mass_q = st.overlap_mass_q.slice(r0, r1);
    sb.overlap_adv = st.overlap_adv.slice(r0, r1);
    ops::token_stats(blk.z, blk.tr, logits.y.slice(r0, r1), diag_k, sb, blk.shard);
  }
  // The teacher's log q(y) and entropy from the reply are exact in every mode (the stats op's
  // are NaN in top-k mode when y is outside both top-k sets, and its entropy needs Full).
  const RowGroup& g = logits.group();
  if (teacher.signal.entropy_q.defined() && M > 0)
    ops::copy(teacher.signal.entropy_q.slice(g.r0, g.r1), st.entropy_q);
  return st;
}

}  // namespace opd::distill
