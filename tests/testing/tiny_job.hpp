// A tiny pretrain → eval job over generated arithmetic data, for tests of the opd binary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace opd::testing {

// Writes train.jsonl (count examples) and test.jsonl (40) under dir with `opd data arith`.
void make_arith_data(const std::filesystem::path& dir, int count = 400);

// A job: [model.tiny] (d_model 32, 1 layer), a pretrain stage of `steps` steps on
// train.jsonl checkpointing every `every` steps, then an eval stage on test.jsonl.
std::string tiny_job(const std::string& run_dir, int steps, int every = 0);

// A job whose stages pretrain a tiny teacher and a tinier student briefly, then distil the
// student for `steps` steps (checkpoints every `every`), with an evaluation every `eval_every`.
// `objective` is inserted into [stage.objective] (e.g. "kind = \"pg_sampled\"").
std::string tiny_distill_job(const std::string& run_dir, int steps, int every = 0,
                             const std::string& signal = "topk",
                             const std::string& objective = "kind = \"pg_topk\"");

// Replaces the first `from` in `text` by `to` (which must occur: a test's job edit that misses
// is a test bug).
std::string edit(std::string text, const std::string& from, const std::string& to);

// Two runs' metrics.jsonl rows, step by step, as reproductions of each other on other layouts:
// the same number of rows, the same sampled tokens (response lengths and verdicts exact), and
// every other number within fp32 tolerance: `tol` relative for the loss and gradient norm,
// 3 tol for the diagnostics (entropies near log V sum many nearly equal terms), absolute below
// 1. Timings are skipped.
void expect_same_run(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b,
                     double tol = 1e-5);

}  // namespace opd::testing
