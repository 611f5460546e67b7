#include "model/lm_loss.hpp"

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "parallel/vocab_parallel.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::Tensor;

LossSum lm_cross_entropy(Transformer& model, const Tensor& ids, const Tensor& pos,
                         const Tensor& targets, float grad_per_token, int64_t vocab_chunk) {
  OPD_CHECK(targets.shape() == ids.shape(), "targets ", targets.describe(), " vs ids ",
            ids.describe());
  const bool train = grad_per_token != 0.0f;
  const int64_t N = ids.numel();
  const Tensor& h = model.forward(ids, pos, train);
  const Tensor flat_targets = targets.view({N});
  ops::HeadStats stats;
  stats.lse = Tensor::empty({N});
  stats.target_logit = Tensor::empty({N});
  const parallel::TensorParallel& tp = model.tensor_parallel();
  parallel::vocab_parallel_head_stats(h, model.lm_head().value, &flat_targets, 1.0f, vocab_chunk,
                                      tp, stats);

  LossSum out;
  const float* lse = stats.lse.data<float>();
  const float* tl = stats.target_logit.data<float>();
  const int32_t* tg = flat_targets.data<int32_t>();
  Tensor d_loss = Tensor::zeros({N});
  float* dl = d_loss.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    if (tg[n] < 0) continue;
    out.sum += static_cast<double>(lse[n]) - static_cast<double>(tl[n]);
    ++out.count;
    dl[n] = grad_per_token;
  }
  if (train) {
    Tensor dh = Tensor::empty({N, model.config().d_model});
    parallel::vocab_parallel_cross_entropy_backward(h, model.lm_head().value, flat_targets,
                                                    stats.lse, d_loss, 1.0f, vocab_chunk, tp, dh,
                                                    model.lm_head().grad);
    model.backward(dh);
  }
  return out;
}

Tensor causal_positions(int64_t batch, int64_t seq) {
  Tensor pos = Tensor::empty({batch, seq}, core::DType::I32);
  int32_t* p = pos.data<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq; ++t) p[b * seq + t] = static_cast<int32_t>(t);
  return pos;
}

}  // namespace opd::model
