#include "model/lm_loss.hpp"

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "parallel/pipeline_parallel.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::Tensor;

using ops::on_device;

LossSum lm_cross_entropy(Transformer& model, const Tensor& ids, const Tensor& pos,
                         const Tensor& targets, float grad_per_token, int64_t vocab_chunk,
                         int micro_batches) {
  OPD_CHECK(targets.shape() == ids.shape(), "targets ", targets.describe(), " vs ids ",
            ids.describe());
  const int64_t B = ids.dim(0), T = ids.dim(1);
  OPD_CHECK(micro_batches >= 1 && B % micro_batches == 0, "a batch of ", B,
            " rows does not split into ", micro_batches, " micro-batches");
  const bool train = grad_per_token != 0.0f;
  const int64_t rows = B / micro_batches, N = rows * T;
  const parallel::PipelineParallel& pp = model.pipeline();
  // d_h of each micro-batch in flight (last stage), by activation slot.
  std::vector<Tensor> dh(static_cast<std::size_t>(pp.size()));
  LossSum out;

  auto forward = [&](int i) {
    const int slot = i % pp.size();
    const Tensor mb_ids = ids.slice(i * rows, (i + 1) * rows);
    const Tensor mb_pos = pos.slice(i * rows, (i + 1) * rows);
    const Tensor& h = model.forward(mb_ids, mb_pos, train, nullptr, slot);
    if (!model.has_head()) return;
    // The head runs where the model lives; the per-row loss bookkeeping on the host.
    const core::Device dev = model.device();
    const Tensor flat_targets = targets.slice(i * rows, (i + 1) * rows).view({N});
    const Tensor targets_dev = on_device(flat_targets, dev);
    ops::HeadStats stats;
    stats.lse = Tensor::empty({N}, core::DType::F32, dev);
    stats.target_logit = Tensor::empty({N}, core::DType::F32, dev);
    model.head_stats(h, &targets_dev, vocab_chunk, stats);
    const Tensor lse_host = on_device(stats.lse, core::Device::Host);
    const Tensor tl_host = on_device(stats.target_logit, core::Device::Host);
    const float* lse = lse_host.data<float>();
    const float* tl = tl_host.data<float>();
    const int32_t* tg = flat_targets.data<int32_t>();
    Tensor d_loss = Tensor::zeros({N});
    float* dl = d_loss.data<float>();
    for (int64_t n = 0; n < N; ++n) {
      if (tg[n] < 0) continue;
      out.sum += static_cast<double>(lse[n]) - static_cast<double>(tl[n]);
      ++out.count;
      dl[n] = grad_per_token;
    }
    if (!train) return;
    Tensor& d = dh[static_cast<std::size_t>(slot)];
    if (d.numel() != N * model.config().d_model)
      d = Tensor::empty({N, model.config().d_model}, core::DType::F32, dev);
    model.head_cross_entropy_backward(h, targets_dev, stats.lse, on_device(d_loss, dev), vocab_chunk, d);
  };
  auto backward = [&](int i) {
    model.backward(dh[static_cast<std::size_t>(i % pp.size())], i % pp.size(), i == micro_batches - 1);
  };

  if (train) {
    parallel::one_forward_one_backward(pp, micro_batches, forward, backward);
  } else {
    for (int i = 0; i < micro_batches; ++i) forward(i);
    pp.wait_sends();
  }
  if (pp.size() > 1) {  // the loss is known on the last stage
    double buf[2] = {out.sum, static_cast<double>(out.count)};
    pp.broadcast_from_last(buf, sizeof buf);
    out.sum = buf[0];
    out.count = static_cast<int64_t>(buf[1]);
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
