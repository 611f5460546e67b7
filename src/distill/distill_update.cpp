#include "distill/distill_update.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "distill/auroc.hpp"
#include "distill/kl_estimates.hpp"
#include "distill/response_logits.hpp"
#include "comm/communicator.hpp"
#include "model/lm_loss.hpp"
#include "parallel/pipeline_parallel.hpp"

namespace opd::distill {

namespace ops = opd::backend;
using core::DType;
using core::Tensor;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
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

std::vector<double> sequence_overlap(model::Transformer& student, const RolloutBatch& rb,
                                     const ScoreReply& teacher, const DistillConfig& cfg) {
  std::vector<double> sum(static_cast<std::size_t>(rb.batch()), 0.0), n(sum.size(), 0.0);
  if (rb.num_rows() == 0) return sum;
  const parallel::PipelineParallel& pp = student.pipeline();
  const std::vector<RowGroup> groups = row_groups(rb, pp.size());
  for (std::size_t i = 0; i < groups.size(); ++i) {
    ResponseLogits logits(student, rb, groups[i], teacher, cfg, false, static_cast<int>(i));
    if (!logits.has_rows()) continue;
    const ops::TokenStats st = token_statistics(logits, teacher, cfg.diag_k);
    const float* o = st.overlap_ratio.data<float>();
    for (int64_t r = groups[i].r0; r < groups[i].r1; ++r) {
      const auto b = static_cast<std::size_t>(rb.row_seq[static_cast<std::size_t>(r)]);
      if (std::isfinite(o[r - groups[i].r0])) sum[b] += o[r - groups[i].r0], n[b] += 1;
    }
  }
  pp.wait_sends();
  for (std::size_t b = 0; b < sum.size(); ++b) sum[b] = n[b] > 0 ? sum[b] / n[b] : kNaN;
  pp.broadcast_from_last(sum.data(), static_cast<int64_t>(sum.size() * sizeof(double)));
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

// What one update needs besides the batch: the normalisers over every rank's batch, the outcome
// advantages, the objective's arguments; and what it accumulates (metric sums, the loss, the
// per-response teacher reward for the AUROC).
struct UpdateState {
  std::vector<int64_t> rows_of_seq;
  int64_t rows_all = 0, seqs_all = 0;
  std::vector<double> outcome;
  backend::ObjectiveArgs args;
  Means means;
  double loss_sum = 0;
  std::vector<double> scores, labels;
};

// The objective over one group's response rows (last pipeline stage): statistics, advantages,
// the gradient with respect to the logits, back through the head into d_h [group tokens, D]
// (overwritten), and the group's token-level metrics.
void update_group(model::Transformer& student, const RolloutBatch& rb, ResponseLogits& logits,
                  const ScoreReply& teacher, const DistillConfig& cfg, UpdateState& u,
                  Tensor& d_h) {
  const ObjectiveConfig& oc = cfg.objective;
  const RowGroup& g = logits.group();
  const int64_t M = g.rows(), r0 = g.r0, D = student.config().d_model;
  const int64_t RB = cfg.rows_per_block;
  ops::fill(d_h, 0.0f);
  if (M == 0) return;
  const ops::TokenStats st = token_statistics(logits, teacher, cfg.diag_k);
  const float* lq = teacher.signal.logq_y.data<float>() + r0;
  const float* lp = st.logp_y.data<float>();
  auto seq_of = [&](int64_t i) { return static_cast<std::size_t>(rb.row_seq[static_cast<std::size_t>(r0 + i)]); };

  // Advantages.
  std::vector<double> reward(static_cast<std::size_t>(M));  // per-token teacher term
  for (int64_t i = 0; i < M; ++i) reward[static_cast<std::size_t>(i)] = lq[i] - lp[i];
  std::vector<double> ret = reward;
  if (oc.discount > 0)  // reward-to-go within each response (its rows are contiguous)
    for (int64_t i = M - 2; i >= 0; --i)
      if (seq_of(i) == seq_of(i + 1))
        ret[static_cast<std::size_t>(i)] += oc.discount * ret[static_cast<std::size_t>(i + 1)];
  const float* klsrc = oc.baseline == "kl_full"   ? st.kl_full.data<float>()
                       : oc.baseline == "kl_topk" ? st.kl_topk.data<float>()
                                                  : nullptr;
  Tensor adv = Tensor::zeros({M}), base = Tensor::zeros({M}), w = Tensor::empty({M});
  for (int64_t i = 0; i < M; ++i) {
    const auto ii = static_cast<std::size_t>(i);
    const double b = klsrc ? -oc.teacher_weight * klsrc[i] : 0.0;
    const double extra = oc.reward_weight * u.outcome[seq_of(i)];
    adv.data<float>()[i] = static_cast<float>(
        oc.kind == "pg_sampled" ? oc.teacher_weight * ret[ii] - b + extra : extra);
    base.data<float>()[i] = static_cast<float>(b);
    const double n_seq = static_cast<double>(u.rows_of_seq[seq_of(i)]);
    w.data<float>()[i] = static_cast<float>(
        oc.aggregation == "sum"        ? 1.0
        : oc.aggregation == "seq_mean" ? 1.0 / (static_cast<double>(u.seqs_all) * n_seq)
                                       : 1.0 / static_cast<double>(u.rows_all));
  }
  const Tensor logmu = Tensor::from_vector(
      std::vector<float>(rb.logmu.begin() + r0, rb.logmu.begin() + r0 + M), {M});

  // The objective's gradient with respect to the logits, then back through the head.
  Tensor loss = Tensor::empty({M});
  Tensor dh_r = Tensor::empty({M, D}, DType::F32, student.device());
  for (int64_t a = 0; a < M; a += RB) {
    const int64_t b = std::min(M, a + RB);
    LogitsBlock blk;
    logits.block(a, b, blk);
    Tensor dz = logits.dz_scratch(b - a), lb = loss.slice(a, b);
    ops::objective_rows(blk.z, blk.tr, logits.y.slice(a, b), logmu.slice(a, b), adv.slice(a, b),
                        base.slice(a, b), w.slice(a, b), u.args, lb, dz, blk.shard);
    Tensor dhb = dh_r.slice(a, b);
    logits.block_backward(a, b, dz, dhb);
  }
  ops::embedding_backward(dh_r, logits.rows, d_h);  // scatter the rows back to their positions

  // Token-level metrics.
  for (int64_t i = 0; i < M; ++i) u.loss_sum += loss.data<float>()[i];
  const float* hq = st.entropy_q.data<float>();
  const float* hp = st.entropy_p.data<float>();
  Means& m = u.means;
  const KlEstimates kl = kl_estimates(lp, lq, hp, hq, M);
  m.add("kl_k1", kl.k1_sum, kl.n);
  m.add("kl_k3", kl.k3_sum, kl.n);
  m.add("entropy_gap", kl.gap_sum, kl.gap_n);
  m.add_finite("kl_full", st.kl_full.data<float>(), M);
  m.add_finite("kl_topk", st.kl_topk.data<float>(), M);
  m.add_finite("entropy_student", hp, M);
  m.add_finite("entropy_teacher", hq, M);
  m.add_finite("overlap_ratio", st.overlap_ratio.data<float>(), M);
  m.add_finite("overlap_mass_student", st.overlap_mass_p.data<float>(), M);
  m.add_finite("overlap_mass_teacher", st.overlap_mass_q.data<float>(), M);
  m.add_finite("overlap_advantage", st.overlap_adv.data<float>(), M);
  // Entropy by relative position in the response.
  const int nb = std::max(1, cfg.position_buckets);
  for (int64_t i = 0; i < M; ++i) {
    const double len = rb.response_len[seq_of(i)];
    const int bk = std::min(nb - 1, static_cast<int>(rb.row_index[static_cast<std::size_t>(r0 + i)] / len * nb));
    m.add("entropy_student_pos" + std::to_string(bk), hp[i], 1);
  }
  // How well the sequence-mean teacher reward separates correct from incorrect responses.
  std::vector<double> seq_reward(static_cast<std::size_t>(g.b1 - g.b0), 0.0);
  for (int64_t i = 0; i < M; ++i)
    seq_reward[seq_of(i) - static_cast<std::size_t>(g.b0)] += reward[static_cast<std::size_t>(i)];
  for (int64_t b = g.b0; b < g.b1; ++b)
    if (u.rows_of_seq[static_cast<std::size_t>(b)] > 0) {
      u.scores.push_back(seq_reward[static_cast<std::size_t>(b - g.b0)] /
                         static_cast<double>(u.rows_of_seq[static_cast<std::size_t>(b)]));
      u.labels.push_back(rb.correct[static_cast<std::size_t>(b)]);
    }
}

}  // namespace

StepMetrics distill_backward(model::Transformer& student, const RolloutBatch& rb,
                             const ScoreReply& teacher, const DistillConfig& cfg,
                             const comm::Communicator& dp, int micro_batches) {
  const int64_t M = rb.num_rows(), B = rb.batch(), T = rb.seq_len();
  const int64_t D = student.config().d_model;
  const parallel::PipelineParallel& pp = student.pipeline();
  UpdateState u;
  // Normalisers over the whole (all ranks') batch, so that summed gradients equal one rank's.
  u.rows_of_seq.assign(static_cast<std::size_t>(B), 0);
  for (int32_t s : rb.row_seq) ++u.rows_of_seq[static_cast<std::size_t>(s)];
  int64_t totals[2] = {M, 0};  // response positions, responses with at least one
  for (int64_t c : u.rows_of_seq) totals[1] += c > 0;
  dp.allreduce_sum(totals, 2);
  u.rows_all = totals[0];
  u.seqs_all = totals[1];
  u.outcome = group_normalised_rewards(rb.example, rb.correct);
  u.args = objective_args(cfg.objective);
  if (!rb.on_policy) u.args.use_ratio = false;  // fixed data has no sampler log-probs

  if (M > 0) {
    // Groups of sequences as micro-batches, in the 1F1B order through the pipeline; each
    // group's activations and d_h live in its slot until its backward.
    const std::vector<RowGroup> groups = row_groups(rb, micro_batches);
    std::vector<Tensor> d_h(static_cast<std::size_t>(pp.size()));
    auto forward = [&](int i) {
      const RowGroup& g = groups[static_cast<std::size_t>(i)];
      const int slot = i % pp.size();
      ResponseLogits logits(student, rb, g, teacher, cfg, true, slot);
      if (!logits.has_rows()) return;
      Tensor& d = d_h[static_cast<std::size_t>(slot)];
      d = Tensor::empty({(g.b1 - g.b0) * T, D}, DType::F32, student.device());
      update_group(student, rb, logits, teacher, cfg, u, d);
    };
    auto backward = [&](int i) {
      student.backward(d_h[static_cast<std::size_t>(i % pp.size())], i % pp.size(),
                       i + 1 == static_cast<int>(groups.size()));
    };
    parallel::one_forward_one_backward(pp, static_cast<int>(groups.size()), forward, backward);
  }
  // Every rank (and stage) names every metric, possibly with count 0, so the buffers line up.
  for (int b = 0; b < std::max(1, cfg.position_buckets); ++b)
    u.means.add("entropy_student_pos" + std::to_string(b), 0, 0);
  for (const char* name : {"kl_k1", "kl_k3", "entropy_gap", "kl_full", "kl_topk", "entropy_student",
                           "entropy_teacher", "overlap_ratio", "overlap_mass_student",
                           "overlap_mass_teacher", "overlap_advantage"})
    u.means.add(name, 0, 0);
  // Sequence-level metrics.
  for (int64_t b = 0; b < B; ++b) {
    const auto bi = static_cast<std::size_t>(b);
    u.means.add("response_length", rb.response_len[bi], 1);
    u.means.add("truncation_rate", rb.truncated[bi], 1);
    u.means.add("rollout_accuracy", rb.correct[bi], 1);
  }
  StepMetrics m;
  u.means.finish(dp, m);
  dp.allreduce_sum(&u.loss_sum, 1);
  m["loss"] = u.loss_sum;
  m["response_tokens"] = static_cast<double>(u.rows_all);
  const std::vector<double> all_scores = dp.allgather(u.scores), all_labels = dp.allgather(u.labels);
  m["reward_auroc"] = auroc(all_scores, std::vector<int>(all_labels.begin(), all_labels.end()));
  if (pp.size() > 1) {  // the token-level results are the last stage's
    std::vector<double> values;
    for (const auto& [name, v] : m) values.push_back(v);
    pp.broadcast_from_last(values.data(), static_cast<int64_t>(values.size() * sizeof(double)));
    std::size_t i = 0;
    for (auto& [name, v] : m) v = values[i++];
  }
  return m;
}

}  // namespace opd::distill
