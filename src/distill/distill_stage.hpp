// The `distill` stage (DESIGN.md §3): per step, the student samples responses to a batch of
// prompts, the teacher scores every response token, the student is updated by the chosen
// objective; diagnostics every step, evaluation with gap recovery every N steps, checkpoints with
// exact resume.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "data/dataset.hpp"
#include "data/mixture_sampler.hpp"
#include "comm/topology.hpp"
#include "distill/rollout.hpp"
#include "distill/stage.hpp"
#include "distill/teacher.hpp"

namespace opd::distill {

class DistillStage final : public Stage {
 public:
  DistillStage(const JobConfig& job, const StageConfig& stage, const data::Tokenizer& tokenizer,
               const comm::Topology& topo);
  void prepare() override;
  StageOutcome run(StopCondition& stop) override;
  // Data parallel: each rank samples, scores and learns from prompts_per_step / dp prompts of
  // every step; gradients and metrics are reduced over the ranks.
  bool data_parallel() const override { return true; }

 private:
  double evaluate_accuracy(model::Transformer& m, const std::vector<data::Example>& examples);
  // Split placement, on a teacher rank: score the requests of this rank's students each step.
  StageOutcome serve(StopCondition& stop);
  // The pool indices to train on: all, or the best-aligned fraction (prompt_select), measured
  // once with the initial student and kept in RUN/<stage>/selected_prompts.json.
  std::vector<int64_t> select_prompts(model::Transformer& student, TeacherScorer& teacher);
  std::filesystem::path selection_file() const;  // RUN/<stage>/selected_prompts.json
  int64_t selection_candidates() const;
  // The teacher's request for a batch (in the teacher's template when it differs).
  ScoreRequest score_request(const RolloutBatch& rb, Signal mode) const;
  // The pool indices of step `step`'s prompts.
  std::vector<int64_t> step_prompts(int64_t step) const;

  const JobConfig& job_;
  const StageConfig& cfg_;
  const data::Tokenizer& tok_;
  const comm::Topology& topo_;
  std::string dir_;
  // Every prompt set (the stage's data, then each [[stage.mix]]) in one pool, each example's
  // prompt in the student's template; teacher_prompts_ the same prompts in the teacher's.
  std::vector<data::Example> pool_;
  std::vector<std::string> teacher_prompts_;
  std::vector<int64_t> set_offsets_, set_sizes_;
  std::vector<double> set_weights_;
  std::vector<int64_t> selected_;  // after select_prompts (empty: the mixture over all sets)
  std::optional<data::MixtureSampler> sampler_;
  bool retemplate_ = false;  // the teacher's template differs from the student's
  std::vector<data::Example> eval_student_, eval_teacher_;
};

}  // namespace opd::distill
