#include "distill/eval_stage.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/prompt_template.hpp"
#include "data/stop_tokens.hpp"
#include "data/verifier.hpp"
#include "distill/model_io.hpp"
#include "distill/sample_responses.hpp"
#include "model/generator.hpp"

namespace opd::distill {

namespace fs = std::filesystem;

EvalResult evaluate(model::Transformer& m, const data::Tokenizer& tok,
                    const std::vector<data::Example>& examples, const EvalConfig& cfg,
                    uint64_t seed, std::vector<std::string>* first_lines, std::size_t max_lines,
                    const comm::Communicator* dp) {
  EvalResult res;
  const int64_t k = cfg.samples;
  const int64_t n = cfg.limit > 0 ? std::min<int64_t>(cfg.limit, static_cast<int64_t>(examples.size()))
                                  : static_cast<int64_t>(examples.size());
  const int ranks = dp ? dp->size() : 1, rank = dp ? dp->rank() : 0;
  const int64_t lo = n * rank / ranks, hi = n * (rank + 1) / ranks;
  std::vector<std::string> prompts;
  for (int64_t i = lo; i < hi; ++i) prompts.push_back(examples[static_cast<std::size_t>(i)].prompt);
  // Summed over ranks: avg@k numerator, correct samples, response tokens, truncated samples.
  double sums[4] = {0, 0, 0, 0};
  std::vector<int64_t> correct_per_example(static_cast<std::size_t>(hi - lo), 0);
  sample_responses(m, tok, prompts, k, cfg.sampling, seed, cfg.batch_size,
                   [&](int64_t e, int64_t, const model::Generation& g) {
                     const auto& ex = examples[static_cast<std::size_t>(e)];
                     const std::string text = tok.decode(g.tokens);
                     const bool ok = data::verify(text, ex.answer, cfg.marker);
                     correct_per_example[static_cast<std::size_t>(e - lo)] += ok;
                     sums[1] += ok;
                     sums[2] += static_cast<double>(g.tokens.size());
                     sums[3] += !g.stopped;
                     if (first_lines && first_lines->size() < max_lines) {
                       nlohmann::json j = {{"prompt", ex.prompt}, {"response", text},
                                           {"answer", ex.answer}, {"correct", ok}};
                       first_lines->push_back(j.dump());
                     }
                   },
                   lo);
  for (int64_t c : correct_per_example) sums[0] += static_cast<double>(c) / static_cast<double>(k);
  if (dp) dp->allreduce_sum(sums, 4);
  const int64_t items = n * k;
  res.examples = n;
  res.samples = items;
  res.correct = static_cast<int64_t>(sums[1]);
  res.accuracy = n ? sums[0] / static_cast<double>(n) : 0.0;
  res.mean_response_tokens = items ? sums[2] / static_cast<double>(items) : 0;
  res.truncated = items ? sums[3] / static_cast<double>(items) : 0;
  return res;
}

EvalStage::EvalStage(const JobConfig& job, const StageConfig& stage,
                     const data::Tokenizer& tokenizer, const comm::Topology& topo)
    : job_(job), cfg_(stage), tok_(tokenizer), topo_(topo) {}

void EvalStage::prepare() {
  stop_tokens_ = data::stop_token_ids(tok_, cfg_.eval.stop, cfg_.where + ": stop");
  const std::string data_path = resolve_data(job_, cfg_.data);
  examples_ = data::load_jsonl(data_path);
  for (auto& ex : examples_) ex.prompt = data::apply_template(cfg_.prompt_template, ex.prompt);
  for (std::size_t i = 0; i < examples_.size(); ++i)
    if (examples_[i].answer.empty())
      input_error(data_path + ":" + std::to_string(i + 1), "example has no \"answer\"",
                  "an eval set needs a reference answer per prompt");
  check_model_fits_layout(job_, cfg_.model, tok_, topo_.student_layout(), "student");
  const int64_t context = model_context(job_, cfg_.model, tok_);
  for (std::size_t i = 0; i < examples_.size(); ++i)
    check_prompt_fits(tok_, examples_[i].prompt, context, data_path + ":" + std::to_string(i + 1));
}

StageOutcome EvalStage::run(StopCondition&) {
  const std::string dir = stage_dir(job_, cfg_.name);
  const std::string ckpt = resolve_checkpoint(job_, cfg_.model);
  auto m = load_model(ckpt, tok_.describe(), model_parallel_of(topo_, job_.run));
  std::vector<std::string> lines;
  EvalConfig ec = cfg_.eval;
  ec.sampling.stop_tokens = stop_tokens_;
  EvalResult r = evaluate(*m, tok_, examples_, ec, job_.run.seed, &lines, 64, &topo_.dp());
  if (!topo_.is_root()) return StageOutcome::Done;  // the root writes the results
  fs::create_directories(dir);
  nlohmann::json j = {{"stage", cfg_.name},        {"model", ckpt},
                      {"examples", r.examples},    {"samples_per_example", cfg_.eval.samples},
                      {"correct", r.correct},      {"accuracy", r.accuracy},
                      {"temperature", cfg_.eval.sampling.temperature},
                      {"mean_response_tokens", r.mean_response_tokens},
                      {"truncated", r.truncated}};
  {
    std::ofstream out(fs::path(dir) / "samples.jsonl");
    for (const auto& l : lines) out << l << '\n';
  }
  const fs::path results = fs::path(dir) / "results.json";
  {
    std::ofstream out(results.string() + ".tmp");
    out << j.dump(2) << '\n';
  }
  fs::rename(results.string() + ".tmp", results);
  char acc[32];
  std::snprintf(acc, sizeof acc, "%.4f", r.accuracy);
  core::log::info(cfg_.name, ": accuracy ", acc, " (avg@", cfg_.eval.samples, " over ", r.examples,
                  " examples, ", r.correct, "/", r.samples, " samples correct)");
  std::ofstream(fs::path(dir) / "DONE") << "accuracy " << acc << "\n";
  return StageOutcome::Done;
}

}  // namespace opd::distill
