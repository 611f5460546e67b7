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
#include "model/generator.hpp"

namespace opd::distill {

namespace fs = std::filesystem;

EvalResult evaluate(model::Transformer& m, const data::Tokenizer& tok,
                    const std::vector<data::Example>& examples, const EvalConfig& cfg,
                    uint64_t seed, std::vector<std::string>* first_lines, std::size_t max_lines) {
  EvalResult res;
  const int64_t k = cfg.samples;
  const int64_t n = cfg.limit > 0 ? std::min<int64_t>(cfg.limit, static_cast<int64_t>(examples.size()))
                                  : static_cast<int64_t>(examples.size());
  // Work items are (example, sample) pairs, batched; each has its own sampling stream.
  const int64_t items = n * k;
  int64_t response_tokens = 0, truncated = 0;
  std::vector<int64_t> correct_per_example(static_cast<std::size_t>(n), 0);
  for (int64_t start = 0; start < items; start += cfg.batch_size) {
    const int64_t end = std::min(items, start + cfg.batch_size);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<uint64_t> streams;
    for (int64_t i = start; i < end; ++i) {
      prompts.push_back(data::build_prompt(tok, examples[static_cast<std::size_t>(i / k)].prompt).tokens);
      streams.push_back(static_cast<uint64_t>(i));
    }
    auto gens = model::generate(m, prompts, cfg.sampling, seed, streams, tok.eos_id());
    for (int64_t i = start; i < end; ++i) {
      const auto& g = gens[static_cast<std::size_t>(i - start)];
      const auto& ex = examples[static_cast<std::size_t>(i / k)];
      const std::string text = tok.decode(g.tokens);
      const bool ok = data::verify(text, ex.answer, cfg.marker);
      correct_per_example[static_cast<std::size_t>(i / k)] += ok;
      res.correct += ok;
      response_tokens += static_cast<int64_t>(g.tokens.size());
      truncated += !g.stopped;
      if (first_lines && first_lines->size() < max_lines) {
        nlohmann::json j = {{"prompt", ex.prompt}, {"response", text}, {"answer", ex.answer},
                            {"correct", ok}};
        first_lines->push_back(j.dump());
      }
    }
  }
  res.examples = n;
  res.samples = items;
  double acc = 0;
  for (int64_t c : correct_per_example) acc += static_cast<double>(c) / static_cast<double>(k);
  res.accuracy = n ? acc / static_cast<double>(n) : 0.0;
  res.mean_response_tokens = items ? static_cast<double>(response_tokens) / static_cast<double>(items) : 0;
  res.truncated = items ? static_cast<double>(truncated) / static_cast<double>(items) : 0;
  return res;
}

EvalStage::EvalStage(const JobConfig& job, const StageConfig& stage,
                     const data::Tokenizer& tokenizer)
    : job_(job), cfg_(stage), tok_(tokenizer) {}

void EvalStage::prepare() {
  stop_tokens_ = data::stop_token_ids(tok_, cfg_.eval.stop, cfg_.where + ": stop");
  const std::string data_path = resolve_data(job_, cfg_.data);
  examples_ = data::load_jsonl(data_path);
  for (auto& ex : examples_) ex.prompt = data::apply_template(cfg_.prompt_template, ex.prompt);
  for (std::size_t i = 0; i < examples_.size(); ++i)
    if (examples_[i].answer.empty())
      input_error(data_path + ":" + std::to_string(i + 1), "example has no \"answer\"",
                  "an eval set needs a reference answer per prompt");
  const int64_t context = model_context(job_, cfg_.model, tok_);
  for (std::size_t i = 0; i < examples_.size(); ++i) {
    const auto len = static_cast<int64_t>(data::build_prompt(tok_, examples_[i].prompt).tokens.size());
    if (len >= context)
      input_error(data_path + ":" + std::to_string(i + 1),
                  "prompt has " + std::to_string(len) + " tokens, the model's context is " +
                      std::to_string(context),
                  "shorten the prompt or use a model with a larger max_seq_len");
  }
}

StageOutcome EvalStage::run(StopCondition&) {
  const std::string dir = stage_dir(job_, cfg_.name);
  fs::create_directories(dir);
  const std::string ckpt = resolve_checkpoint(job_, cfg_.model);
  auto m = load_model(ckpt, tok_.describe());
  std::vector<std::string> lines;
  EvalConfig ec = cfg_.eval;
  ec.sampling.stop_tokens = stop_tokens_;
  EvalResult r = evaluate(*m, tok_, examples_, ec, job_.run.seed, &lines, 64);
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
