// The distill stage's settings (DESIGN.md §3–§5): rollouts, teacher signal, objective, diagnostics
// and evaluation, with the check that the objective can be computed from the signal asked for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/ops.hpp"
#include "model/generator.hpp"

namespace opd::distill {

struct ObjectiveConfig {
  std::string kind = "pg_topk";       // pg_sampled | pg_topk | topk_rkl | full_rkl | fkl | jsd | sft
  std::string support = "student";    // pg_topk: student | teacher | intersection | union | symdiff
  std::string weights = "student_p";  // pg_topk: student_p | teacher_p | uniform
  std::string baseline = "none";      // none | kl_full | kl_topk (PG forms)
  std::string aggregation = "token_mean";  // token_mean | seq_mean | sum
  double teacher_weight = 1.0;  // weight of the per-token teacher term
  double reward_weight = 0.0;   // alpha: group-normalised verifier reward added to the advantage
  double discount = 0.0;        // gamma: reward-to-go over the per-token teacher term
  bool importance = true;       // importance ratio against the sampler's log-probs
  double clip = 0.0;            // PPO-style clip of the ratio; 0 = off
  double beta = 0.5;            // jsd
  bool tail = false;            // fkl in top-k form: add the tail bucket
  double gkd_lambda = 1.0;      // fraction of steps on student rollouts (rest: the data's responses)
};

struct DistillConfig {
  std::string teacher;               // "@stage" or a checkpoint path
  bool allow_teacher_change = false; // resume against a teacher other than the checkpoint's
  std::string signal = "topk";       // sampled | topk | full
  int topk = 16;                     // k of the top-k signal (and of the student's recorded ids)
  double teacher_temperature = 1.0;
  int64_t prompts_per_step = 8, samples_per_prompt = 4;
  model::SamplingConfig sampling;    // rollouts
  ObjectiveConfig objective;
  int diag_k = 16;                   // k of the overlap diagnostics
  int position_buckets = 4;          // entropy by relative position in the response
  int64_t rows_per_block = 64;       // logits rows formed at once
  // Split placement: the teacher scores batch k + 1 while the student updates on batch k (one
  // step off-policy, corrected by the importance ratio).
  bool overlap = false;
  // Prompts: the stage's `data` (weight data_weight) mixed with further sets by weight (content
  // alignment); the teacher sees its own template around each prompt (template alignment).
  struct PromptSet {
    std::string data;
    double weight = 1.0;
  };
  std::vector<PromptSet> mix;
  double data_weight = 1.0;
  std::string teacher_template;  // empty: the stage's template
  // Prompt selection: keep the `select_fraction` of the candidate prompts whose student rollouts
  // overlap most with the teacher's top-k at the start (1 = keep all).
  double select_fraction = 1.0;
  int64_t select_candidates = 0;  // prompts screened; 0 = all
  // Evaluation (accuracy avg@k with gap recovery) every eval_every steps and at the end.
  std::string eval_data;
  int64_t eval_every = 0;
};

backend::Signal signal_mode(const std::string& name);
backend::ObjectiveArgs objective_args(const ObjectiveConfig& c);
// Input error naming `where` when the objective (or its baseline, support, tail) needs a
// teacher signal that `signal` does not give, or options that do not go together.
void check_objective(const DistillConfig& c, const std::string& where);

}  // namespace opd::distill
