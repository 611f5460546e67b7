// Next-token cross-entropy through the vocab-chunked LM head, with its backward into the model.
#pragma once

#include <cstdint>

#include "core/tensor.hpp"
#include "model/transformer.hpp"

namespace opd::model {

struct LossSum {
  double sum = 0.0;    // sum of -log p(target) over rows with a target
  int64_t count = 0;   // rows with a target (target >= 0)
  double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
};

// Forward (and, with grad_per_token != 0, backward) of the cross-entropy of targets [B, T]
// (-1: no loss) for input ids [B, T] at positions pos [B, T]. Each row's loss is weighted by
// grad_per_token in the gradient (1 / tokens in the optimizer batch gives the token mean).
// The batch runs as `micro_batches` equal groups of rows (B must divide): through a pipeline in
// the 1F1B order, so that the stages work on different micro-batches at once. Every pipeline
// stage calls it and gets the loss (computed on the last stage).
LossSum lm_cross_entropy(Transformer& model, const core::Tensor& ids, const core::Tensor& pos,
                         const core::Tensor& targets, float grad_per_token,
                         int64_t vocab_chunk = 4096, int micro_batches = 1);

// Positions 0..T-1 for every row of a [B, T] batch.
core::Tensor causal_positions(int64_t batch, int64_t seq);

}  // namespace opd::model
