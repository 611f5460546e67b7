#include "distill/distill_update.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "distill/auroc.hpp"
#include "distill/kl_estimates.hpp"
#include "comm/communicator.hpp"
#include "model/lm_loss.hpp"

namespace opd::distill {

namespace ops = opd::backend;
using core::DType;
using core::Tensor;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

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

}  // namespace

std::vector<double> group_normalised_rewards(const std::vector<int32_t>& example,
                                             const std::vector<uint8_t>& correct) {
  std::map<int32_t, std::pair<double, double>> sums;  // example -> (sum, sum of squares)
  std::map<int32_t, int> counts;
  for (std::size_t i = 0; i < example.size(); ++i) {
    sums[example[i]].first += correct[i];
    sums[example[i]].second += correct[i] * correct[i];
    ++counts[example[i]];
  }
  std::vector<double> adv(example.size());
  for (std::size_t i = 0; i < example.size(); ++i) {
    const double n = counts[example[i]];
    const double mean = sums[example[i]].first / n;
    const double var = std::max(0.0, sums[example[i]].second / n - mean * mean);
    adv[i] = var > 0 ? (correct[i] - mean) / (std::sqrt(var) + 1e-6) : 0.0;
  }
  return adv;
}

namespace {

// The student's logits at a batch's response positions (and the teacher's, in Full mode), formed
// rows_per_block rows at a time from the gathered final hidden states.
class ResponseLogits {
 public:
  ResponseLogits(model::Transformer& student, const RolloutBatch& rb, const ScoreReply& teacher,
                 const DistillConfig& cfg, bool keep_activations)
      : teacher_(teacher), student_(student), rows_per_block_(cfg.rows_per_block) {
    const int64_t M = rb.num_rows(), V = student.config().vocab_size;
    rows = Tensor::from_vector(rb.rows, {M});
    y = Tensor::from_vector(rb.targets, {M});
    const Tensor& h = student.forward(rb.ids, model::causal_positions(rb.batch(), rb.seq_len()),
                                      keep_activations);
    h_r = Tensor::empty({M, student.config().d_model});
    ops::embedding_forward(h, rows, h_r);  // gather the response positions
    full_ = teacher.signal.mode == backend::Signal::Full;
    z_block_ = Tensor::empty({rows_per_block_, V});
    if (full_) u_block_ = Tensor::empty({rows_per_block_, V});
  }
  int64_t rows_per_block() const { return rows_per_block_; }

  // Student logits and the teacher's rows for rows [r0, r1).
  void block(int64_t r0, int64_t r1, Tensor& z, backend::TeacherRows& tr) {
    z = z_block_.slice(0, r1 - r0);
    student_.logits(h_r.slice(r0, r1), z);  // whole rows (gathered over vocabulary shards)
    tr = slice_rows(teacher_.signal, r0, r1);
    if (full_) {
      tr.logits = u_block_.slice(0, r1 - r0);
      teacher_logits_block(teacher_, r0, r1, tr.logits);
    }
  }

  Tensor rows, y, h_r;

 private:
  const ScoreReply& teacher_;
  model::Transformer& student_;
  int64_t rows_per_block_;
  bool full_ = false;
  Tensor z_block_, u_block_;
};

// Per-token statistics and diagnostics of every response position.
ops::TokenStats token_statistics(ResponseLogits& logits, const ScoreReply& teacher, int diag_k) {
  const int64_t M = logits.rows.numel(), RB = logits.rows_per_block();
  ops::TokenStats st;
  for (Tensor* t : {&st.logp_y, &st.entropy_p, &st.logq_y, &st.entropy_q, &st.kl_full, &st.kl_topk,
                    &st.overlap_ratio, &st.overlap_mass_p, &st.overlap_mass_q, &st.overlap_adv})
    *t = Tensor::empty({M});
  for (int64_t r0 = 0; r0 < M; r0 += RB) {
    const int64_t r1 = std::min(M, r0 + RB);
    Tensor z;
    backend::TeacherRows tr;
    logits.block(r0, r1, z, tr);
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
    ops::token_stats(z, tr, logits.y.slice(r0, r1), diag_k, sb);
  }
  // The teacher's log q(y) and entropy from the reply are exact in every mode (the stats op's
  // are NaN in top-k mode when y is outside both top-k sets, and its entropy needs Full).
  if (teacher.signal.entropy_q.defined()) ops::copy(teacher.signal.entropy_q, st.entropy_q);
  return st;
}

}  // namespace

std::vector<double> sequence_overlap(model::Transformer& student, const RolloutBatch& rb,
                                     const ScoreReply& teacher, const DistillConfig& cfg) {
  std::vector<double> sum(static_cast<std::size_t>(rb.batch()), 0.0), n(sum.size(), 0.0);
  if (rb.num_rows() == 0) return sum;
  ResponseLogits logits(student, rb, teacher, cfg, false);
  const ops::TokenStats st = token_statistics(logits, teacher, cfg.diag_k);
  const float* o = st.overlap_ratio.data<float>();
  for (int64_t i = 0; i < rb.num_rows(); ++i) {
    const auto b = static_cast<std::size_t>(rb.row_seq[static_cast<std::size_t>(i)]);
    if (std::isfinite(o[i])) sum[b] += o[i], n[b] += 1;
  }
  for (std::size_t b = 0; b < sum.size(); ++b) sum[b] = n[b] > 0 ? sum[b] / n[b] : kNaN;
  return sum;
}

namespace {

// Means over all data-parallel ranks: each metric's local sum and count, added up in one
// collective.
class Means {
 public:
  void add(const std::string& name, double sum, double count) {
    auto [it, fresh] = index_.try_emplace(name, sums_.size());
    if (fresh) sums_.push_back(0), counts_.push_back(0);
    sums_[it->second] += sum;
    counts_[it->second] += count;
  }
  void add_finite(const std::string& name, const float* x, int64_t n) {
    double s = 0, c = 0;
    for (int64_t i = 0; i < n; ++i)
      if (std::isfinite(x[i])) s += x[i], c += 1;
    add(name, s, c);
  }
  void finish(const comm::Communicator& dp, StepMetrics& out) {
    std::vector<double> buf = sums_;
    buf.insert(buf.end(), counts_.begin(), counts_.end());
    dp.allreduce_sum(buf.data(), static_cast<int64_t>(buf.size()));
    for (const auto& [name, i] : index_) {
      const double c = buf[sums_.size() + i];
      out[name] = c > 0 ? buf[i] / c : kNaN;
    }
  }

 private:
  std::map<std::string, std::size_t> index_;
  std::vector<double> sums_, counts_;
};

}  // namespace

StepMetrics distill_backward(model::Transformer& student, const RolloutBatch& rb,
                             const ScoreReply& teacher, const DistillConfig& cfg,
                             const comm::Communicator& dp) {
  const ObjectiveConfig& oc = cfg.objective;
  const int64_t M = rb.num_rows(), B = rb.batch(), T = rb.seq_len();
  const int64_t D = student.config().d_model, V = student.config().vocab_size;
  // Normalisers over the whole (all ranks') batch, so that summed gradients equal one rank's.
  std::vector<int64_t> rows_of_seq(static_cast<std::size_t>(B), 0);
  for (int32_t s : rb.row_seq) ++rows_of_seq[static_cast<std::size_t>(s)];
  int64_t totals[2] = {M, 0};  // response positions, responses with at least one
  for (int64_t c : rows_of_seq) totals[1] += c > 0;
  dp.allreduce_sum(totals, 2);
  const int64_t M_all = totals[0], seqs_all = totals[1];

  Means means;
  double loss_sum = 0;
  std::vector<double> scores, labels;  // for the AUROC, gathered from every rank
  if (M > 0) {
    ResponseLogits logits(student, rb, teacher, cfg, true);
    const Tensor& rows = logits.rows;
    const Tensor& y = logits.y;
    const Tensor& h_r = logits.h_r;
    const Tensor logmu = Tensor::from_vector(rb.logmu, {M});
    const int64_t RB = cfg.rows_per_block;
    const ops::TokenStats st = token_statistics(logits, teacher, cfg.diag_k);
    const float* lq = teacher.signal.logq_y.data<float>();
    const float* lp = st.logp_y.data<float>();

    // Advantages.
    const std::vector<double> outcome = group_normalised_rewards(rb.example, rb.correct);
    std::vector<double> reward(static_cast<std::size_t>(M));  // per-token teacher term
    for (int64_t i = 0; i < M; ++i) reward[static_cast<std::size_t>(i)] = lq[i] - lp[i];
    std::vector<double> ret = reward;
    if (oc.discount > 0)  // reward-to-go within each response (its rows are contiguous)
      for (int64_t i = M - 2; i >= 0; --i)
        if (rb.row_seq[static_cast<std::size_t>(i)] == rb.row_seq[static_cast<std::size_t>(i + 1)])
          ret[static_cast<std::size_t>(i)] += oc.discount * ret[static_cast<std::size_t>(i + 1)];
    const float* klsrc = oc.baseline == "kl_full"   ? st.kl_full.data<float>()
                         : oc.baseline == "kl_topk" ? st.kl_topk.data<float>()
                                                    : nullptr;
    Tensor adv = Tensor::zeros({M}), base = Tensor::zeros({M}), w = Tensor::empty({M});
    for (int64_t i = 0; i < M; ++i) {
      const auto ii = static_cast<std::size_t>(i);
      const double b = klsrc ? -oc.teacher_weight * klsrc[i] : 0.0;
      const double extra = oc.reward_weight * outcome[static_cast<std::size_t>(rb.row_seq[ii])];
      adv.data<float>()[i] = static_cast<float>(
          oc.kind == "pg_sampled" ? oc.teacher_weight * ret[ii] - b + extra : extra);
      base.data<float>()[i] = static_cast<float>(b);
      const double n_seq = static_cast<double>(rows_of_seq[static_cast<std::size_t>(rb.row_seq[ii])]);
      w.data<float>()[i] = static_cast<float>(
          oc.aggregation == "sum"        ? 1.0
          : oc.aggregation == "seq_mean" ? 1.0 / (static_cast<double>(seqs_all) * n_seq)
                                         : 1.0 / static_cast<double>(M_all));
    }
    backend::ObjectiveArgs args = objective_args(oc);
    if (!rb.on_policy) args.use_ratio = false;  // fixed data has no sampler log-probs

    // Pass 2: the objective's gradient with respect to the logits, then back through the head.
    Tensor loss = Tensor::empty({M}), dz_block = Tensor::empty({RB, V});
    Tensor dh_r = Tensor::empty({M, D});
    for (int64_t r0 = 0; r0 < M; r0 += RB) {
      const int64_t r1 = std::min(M, r0 + RB);
      Tensor z;
      backend::TeacherRows tr;
      logits.block(r0, r1, z, tr);
      Tensor dz = dz_block.slice(0, r1 - r0), lb = loss.slice(r0, r1);
      ops::objective_rows(z, tr, y.slice(r0, r1), logmu.slice(r0, r1), adv.slice(r0, r1),
                          base.slice(r0, r1), w.slice(r0, r1), args, lb, dz);
      Tensor dhb = dh_r.slice(r0, r1);
      student.logits_backward(h_r.slice(r0, r1), dz, dhb);
    }
    Tensor dh = Tensor::zeros({B * T, D});
    ops::embedding_backward(dh_r, rows, dh);  // scatter the rows back to their positions
    student.backward(dh);

    // Token-level metrics.
    for (int64_t i = 0; i < M; ++i) loss_sum += loss.data<float>()[i];
    const float* hq = st.entropy_q.data<float>();
    const float* hp = st.entropy_p.data<float>();
    const KlEstimates kl = kl_estimates(lp, lq, hp, hq, M);
    means.add("kl_k1", kl.k1_sum, kl.n);
    means.add("kl_k3", kl.k3_sum, kl.n);
    means.add("entropy_gap", kl.gap_sum, kl.gap_n);
    means.add_finite("kl_full", st.kl_full.data<float>(), M);
    means.add_finite("kl_topk", st.kl_topk.data<float>(), M);
    means.add_finite("entropy_student", hp, M);
    means.add_finite("entropy_teacher", hq, M);
    means.add_finite("overlap_ratio", st.overlap_ratio.data<float>(), M);
    means.add_finite("overlap_mass_student", st.overlap_mass_p.data<float>(), M);
    means.add_finite("overlap_mass_teacher", st.overlap_mass_q.data<float>(), M);
    means.add_finite("overlap_advantage", st.overlap_adv.data<float>(), M);
    // Entropy by relative position in the response.
    const int nb = std::max(1, cfg.position_buckets);
    for (int64_t i = 0; i < M; ++i) {
      const auto ii = static_cast<std::size_t>(i);
      const double len = rb.response_len[static_cast<std::size_t>(rb.row_seq[ii])];
      const int bk = std::min(nb - 1, static_cast<int>(rb.row_index[ii] / len * nb));
      means.add("entropy_student_pos" + std::to_string(bk), hp[i], 1);
    }
    // How well the sequence-mean teacher reward separates correct from incorrect responses.
    std::vector<double> seq_reward(static_cast<std::size_t>(B), 0.0);
    for (int64_t i = 0; i < M; ++i)
      seq_reward[static_cast<std::size_t>(rb.row_seq[static_cast<std::size_t>(i)])] += reward[static_cast<std::size_t>(i)];
    for (int64_t b = 0; b < B; ++b)
      if (rows_of_seq[static_cast<std::size_t>(b)] > 0) {
        scores.push_back(seq_reward[static_cast<std::size_t>(b)] / static_cast<double>(rows_of_seq[static_cast<std::size_t>(b)]));
        labels.push_back(rb.correct[static_cast<std::size_t>(b)]);
      }
  }
  for (int b = 0; b < std::max(1, cfg.position_buckets); ++b)
    means.add("entropy_student_pos" + std::to_string(b), 0, 0);  // every rank names every bucket
  // Sequence-level metrics.
  for (int64_t b = 0; b < B; ++b) {
    const auto bi = static_cast<std::size_t>(b);
    means.add("response_length", rb.response_len[bi], 1);
    means.add("truncation_rate", rb.truncated[bi], 1);
    means.add("rollout_accuracy", rb.correct[bi], 1);
  }
  StepMetrics m;
  // Every rank adds the same metric names (possibly with count 0), so the buffers line up.
  for (const char* name : {"kl_k1", "kl_k3", "entropy_gap", "kl_full", "kl_topk", "entropy_student",
                           "entropy_teacher", "overlap_ratio", "overlap_mass_student",
                           "overlap_mass_teacher", "overlap_advantage", "response_length",
                           "truncation_rate", "rollout_accuracy"})
    means.add(name, 0, 0);
  means.finish(dp, m);
  dp.allreduce_sum(&loss_sum, 1);
  m["loss"] = loss_sum;
  m["response_tokens"] = static_cast<double>(M_all);
  const std::vector<double> all_scores = dp.allgather(scores), all_labels = dp.allgather(labels);
  m["reward_auroc"] = auroc(all_scores, std::vector<int>(all_labels.begin(), all_labels.end()));
  return m;
}

}  // namespace opd::distill
