#include "parallel/vocab_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace opd::parallel {

namespace ops = opd::backend;
using core::Tensor;

backend::VocabRange vocab_shard(int64_t vocab, const TensorParallel& tp) {
  if (tp.size() == 1) return {};
  return {tp.shard_begin(vocab), vocab};
}

void vocab_parallel_head_stats(const Tensor& h, const Tensor& w_local, const Tensor* targets,
                               float temperature, int64_t chunk, const TensorParallel& tp,
                               ops::HeadStats& out) {
  const int64_t V = w_local.dim(0) * tp.size();
  ops::lm_head_stats(h, w_local, targets, temperature, chunk, out, vocab_shard(V, tp));
  if (tp.size() == 1) return;
  const int64_t N = h.dim(0);
  const bool want_target = out.target_logit.defined(), want_entropy = out.entropy.defined();
  const float* lse = out.lse.data<float>();
  // One collective for the maxima, one for the sums: [exp(lse_r - m), t_r, exp(lse_r - m) e_r]
  // with e_r = lse_r - H_r = E_{p_r}[z] of this shard's renormalised softmax.
  std::vector<double> m(static_cast<std::size_t>(N));
  for (int64_t n = 0; n < N; ++n) m[n] = lse[n];
  {
    // The group's max per row: allreduce-max over doubles, done as a gather of the maxima.
    const std::vector<double> all = tp.group().allgather(m);
    for (int64_t n = 0; n < N; ++n) {
      double mx = -std::numeric_limits<double>::infinity();
      for (int r = 0; r < tp.size(); ++r) mx = std::max(mx, all[r * N + n]);
      m[n] = mx;
    }
  }
  std::vector<double> sums(static_cast<std::size_t>(3 * N), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const double a = std::exp(static_cast<double>(lse[n]) - m[n]);
    sums[n] = a;
    if (want_target) sums[N + n] = out.target_logit.data<float>()[n];
    if (want_entropy)
      sums[2 * N + n] = a * (static_cast<double>(lse[n]) - out.entropy.data<float>()[n]);
  }
  tp.group().allreduce_sum(sums.data(), 3 * N);
  for (int64_t n = 0; n < N; ++n) {
    const double total_lse = m[n] + std::log(sums[n]);
    out.lse.data<float>()[n] = static_cast<float>(total_lse);
    if (want_target) out.target_logit.data<float>()[n] = static_cast<float>(sums[N + n]);
    if (want_entropy)
      out.entropy.data<float>()[n] = static_cast<float>(total_lse - sums[2 * N + n] / sums[n]);
  }
}

void vocab_parallel_cross_entropy_backward(const Tensor& h, const Tensor& w_local,
                                           const Tensor& targets, const Tensor& lse,
                                           const Tensor& d_loss, float temperature,
                                           int64_t chunk, const TensorParallel& tp, Tensor& dh,
                                           Tensor& dw_local) {
  const int64_t V = w_local.dim(0) * tp.size();
  ops::lm_head_cross_entropy_backward(h, w_local, targets, lse, d_loss, temperature, chunk, dh,
                                      dw_local, vocab_shard(V, tp));
  tp.allreduce_sum(dh);
}

backend::ShardRows vocab_parallel_rows(const Tensor& z_local, const backend::VocabRange& range,
                                       const Tensor& ids, const Tensor* tail_ids,
                                       int64_t student_k, int64_t teacher_k,
                                       const TensorParallel& tp) {
  backend::ShardPartials mine;
  ops::shard_partials(z_local, range, ids, tail_ids, mine);
  // One allgather of [max, sum_exp, sum_exp_dz, sum_exp_tail, z_at] per rank.
  std::vector<double> packed;
  for (const auto* v : {&mine.max, &mine.sum_exp, &mine.sum_exp_dz, &mine.sum_exp_tail, &mine.z_at})
    packed.insert(packed.end(), v->begin(), v->end());
  const std::vector<double> all = tp.group().allgather(packed);
  const std::size_t n = mine.max.size(), per = packed.size();
  std::vector<backend::ShardPartials> shards(static_cast<std::size_t>(tp.size()));
  for (std::size_t r = 0; r < shards.size(); ++r) {
    auto at = all.begin() + static_cast<std::ptrdiff_t>(r * per);
    for (auto* v : {&shards[r].max, &shards[r].sum_exp, &shards[r].sum_exp_dz, &shards[r].sum_exp_tail}) {
      v->assign(at, at + static_cast<std::ptrdiff_t>(n));
      at += static_cast<std::ptrdiff_t>(n);
    }
    shards[r].z_at.assign(at, at + static_cast<std::ptrdiff_t>(mine.z_at.size()));
  }
  return ops::combine_shards(shards, range, ids, student_k, teacher_k);
}

}  // namespace opd::parallel
