// The typed form of a job file (DESIGN.md §8): the run, the tokenizer, named model shapes and the
// ordered stages. app/job_config.cpp fills these from TOML with strict validation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "comm/topology.hpp"
#include "distill/objective_config.hpp"
#include "model/generator.hpp"
#include "model/model_config.hpp"
#include "model/optimizer.hpp"

namespace opd::distill {

struct RunConfig {
  std::string dir = "runs/default";  // RUN: every stage writes under RUN/<stage>/
  std::string name;                  // a label for plots and reports (postprocess/); optional
  uint64_t seed = 1234;
  int threads = 0;                   // BLAS threads; 0 = library default
  double walltime = 0;               // seconds; at a step boundary past walltime - margin the
                                     // stage checkpoints and opd exits with status 3
  double walltime_margin = 30;
  std::string device = "cpu";        // cpu | cuda (each rank its node-local GPU)
  std::string precision = "fp32";    // fp32 | bf16 (mixed precision: bf16 GEMMs, f32 masters)
};

struct CheckpointConfig {
  int64_t every = 0;      // steps; 0 = only at the end
  int64_t keep_last = 2;
  int64_t keep_every = 0; // also keep every M-th step's checkpoint; 0 = none
};

struct EvalConfig {
  int64_t samples = 1;             // k of avg@k
  model::SamplingConfig sampling;  // temperature 0 = greedy
  int64_t batch_size = 64;
  int64_t limit = 0;               // first N examples; 0 = all
  std::string marker = "auto";     // answer | boxed | auto
  std::vector<std::string> stop;   // texts that end a response (each one token), besides EOS
};

// teacher_generate: which of the teacher's responses to keep (the off-policy cold-start data).
struct FilterConfig {
  bool require_marker = true;    // the response contains the answer marker
  bool require_correct = false;  // the answer verifies against the reference
  int repeat_ngram = 8;          // a response in which some n-gram of this many tokens ...
  int repeat_max = 3;            // ... occurs more than this many times is degenerate
};

struct StageConfig {
  std::string name, kind;   // kind: pretrain | sft | eval | distill | teacher_generate
  std::string where;        // "job.toml: stage[1]", for messages
  // The model: an architecture name from [model.*] (fresh init), "@stage" (that stage's final
  // checkpoint) or a checkpoint path.
  std::string model;
  std::string data;
  std::string data_format = "auto";  // auto | jsonl | text
  std::string prompt_template = "{prompt}";  // what the model sees around each prompt
  std::string loss = "auto";         // all | response (auto: all for pretrain, response for sft)
  // Training stages.
  int64_t steps = 0, batch_size = 16, seq_len = 128, log_every = 10, vocab_chunk = 4096;
  model::OptimConfig optim;
  CheckpointConfig checkpoint;
  // Eval stages; distill stages use it for their evaluations.
  EvalConfig eval;
  // Distill stages.
  DistillConfig distill;
  // teacher_generate stages (sampling settings in `eval`).
  FilterConfig filter;
};

struct JobConfig {
  std::string path;       // the job file
  std::string toml_text;  // the job as given (after --set), stored in checkpoints
  RunConfig run;
  std::string tokenizer = "char";  // "char", "hf:PATH" (tokenizer.json) or "tiktoken:PATH" (data::make_tokenizer)
  std::map<std::string, model::ModelConfig> models;
  comm::ParallelConfig parallel;  // dp = 0: as many data-parallel ranks as the job is launched on
  std::vector<StageConfig> stages;
};

}  // namespace opd::distill
