// The `pretrain` and `sft` stages: next-token training of a model on text or prompt/response
// data (sft: loss on the response only), with AdamW, schedules, clipping, checkpoints and exact
// resume (model, optimizer, step and data cursor).
#pragma once

#include <memory>
#include <optional>

#include "data/batch_sampler.hpp"
#include "data/text_window_sampler.hpp"
#include "comm/topology.hpp"
#include "distill/dp_optimizer.hpp"
#include "distill/stage.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

class TrainStage final : public Stage {
 public:
  TrainStage(const JobConfig& job, const StageConfig& stage, const data::Tokenizer& tokenizer,
             const comm::Topology& topo);
  void prepare() override;
  StageOutcome run(StopCondition& stop) override;
  // Data parallel: each rank takes batch_size / dp of every batch; gradients are summed.
  bool data_parallel() const override { return true; }

 private:
  data::TokenBatch next_batch();
  void save(model::Transformer& m, DataParallelOptimizer& opt, int64_t step, int64_t tokens_seen);

  const JobConfig& job_;
  const StageConfig& cfg_;
  const data::Tokenizer& tok_;
  const comm::Topology& topo_;
  std::string dir_;
  std::optional<data::BatchSampler> sequences_;
  std::optional<data::TextWindowSampler> text_;
  int64_t saved_step_ = -1;  // the step of the last checkpoint written by this run
};

}  // namespace opd::distill
