// The `distill` stage (DESIGN.md §3): per step, the student samples responses to a batch of
// prompts, the teacher scores every response token, the student is updated by the chosen
// objective; diagnostics every step, evaluation with gap recovery every N steps, checkpoints with
// exact resume.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "data/batch_sampler.hpp"
#include "data/dataset.hpp"
#include "distill/stage.hpp"
#include "distill/teacher.hpp"

namespace opd::distill {

class DistillStage final : public Stage {
 public:
  DistillStage(const JobConfig& job, const StageConfig& stage, const data::Tokenizer& tokenizer);
  void prepare() override;
  StageOutcome run(StopCondition& stop) override;

 private:
  double evaluate_accuracy(model::Transformer& m);

  const JobConfig& job_;
  const StageConfig& cfg_;
  const data::Tokenizer& tok_;
  std::string dir_;
  std::vector<data::Example> prompts_, eval_examples_;
  std::optional<data::BatchSampler> sampler_;
};

}  // namespace opd::distill
