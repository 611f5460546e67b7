// `opd generate --model CKPT --prompt TEXT...`: sample continuations from a model.
#include <CLI/CLI.hpp>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "core/error.hpp"
#include "data/dataset.hpp"
#include "data/sequence.hpp"
#include "data/stop_tokens.hpp"
#include "data/tokenizer.hpp"
#include "distill/model_io.hpp"
#include "model/generator.hpp"

namespace opd::app {

namespace {
struct GenerateArgs {
  std::string model, data, tokenizer = "char";
  std::vector<std::string> prompts, stop;
  model::SamplingConfig sampling;
  int64_t samples = 1, limit = 0;
  uint64_t seed = 1234;
};

int run_generate(const GenerateArgs& a) {
  auto tok = data::make_tokenizer(a.tokenizer);
  std::vector<std::string> prompts = a.prompts;
  if (!a.data.empty())
    for (const auto& ex : data::load_jsonl(a.data)) prompts.push_back(ex.prompt);
  if (a.limit > 0 && static_cast<int64_t>(prompts.size()) > a.limit) prompts.resize(static_cast<std::size_t>(a.limit));
  if (prompts.empty()) input_error("generate", "no prompts", "give --prompt TEXT or --data FILE");
  model::SamplingConfig sampling = a.sampling;
  sampling.stop_tokens = data::stop_token_ids(*tok, a.stop, "--stop");
  auto m = distill::load_model(a.model, tok->describe());
  std::vector<std::vector<int32_t>> ids;
  std::vector<uint64_t> streams;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    for (int64_t s = 0; s < a.samples; ++s) {
      ids.push_back(data::build_prompt(*tok, prompts[i]).tokens);
      streams.push_back(i * static_cast<uint64_t>(a.samples) + static_cast<uint64_t>(s));
    }
  auto gens = model::generate(*m, ids, sampling, a.seed, streams, tok->eos_id(), tok->vocab_size());
  for (std::size_t i = 0; i < gens.size(); ++i) {
    double lp = 0;
    for (float x : gens[i].logprobs) lp += x;
    nlohmann::json j = {{"prompt", prompts[i / static_cast<std::size_t>(a.samples)]},
                        {"response", tok->decode(gens[i].tokens)},
                        {"tokens", gens[i].tokens.size()},
                        {"logprob", lp},
                        {"stopped", gens[i].stopped}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
}  // namespace

void add_generate_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("generate", "Sample responses from a model checkpoint");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--model", a->model, "Model checkpoint (.h5)")->required();
  cmd->add_option("--prompt", a->prompts, "A prompt (repeatable)");
  cmd->add_option("--data", a->data, "JSONL file whose prompts to use");
  cmd->add_option("--limit", a->limit, "Use the first N prompts");
  cmd->add_option("--samples", a->samples, "Samples per prompt")->capture_default_str();
  cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", a->sampling.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", a->sampling.top_p, "1 = off")->capture_default_str();
  cmd->add_option("--max-new-tokens", a->sampling.max_new_tokens, "")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--stop", a->stop, "A text that ends a response (one token; repeatable)");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer kind")->capture_default_str();
  cmd->callback([a, &status] { status = run_generate(*a); });
}

}  // namespace opd::app
