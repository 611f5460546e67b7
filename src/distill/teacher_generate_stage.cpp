#include "distill/teacher_generate_stage.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/prompt_template.hpp"
#include "data/stop_tokens.hpp"
#include "data/sequence.hpp"
#include "data/verifier.hpp"
#include "distill/model_io.hpp"
#include "distill/sample_responses.hpp"
#include "model/generator.hpp"

namespace opd::distill {

namespace fs = std::filesystem;

bool degenerate_repetition(const std::vector<int32_t>& tokens, int ngram, int max_count) {
  if (ngram <= 0 || static_cast<int>(tokens.size()) < ngram) return false;
  std::map<std::vector<int32_t>, int> counts;
  for (std::size_t i = 0; i + static_cast<std::size_t>(ngram) <= tokens.size(); ++i) {
    std::vector<int32_t> g(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                           tokens.begin() + static_cast<std::ptrdiff_t>(i) + ngram);
    if (++counts[g] > max_count) return true;
  }
  return false;
}

TeacherGenerateStage::TeacherGenerateStage(const JobConfig& job, const StageConfig& stage,
                                           const data::Tokenizer& tokenizer)
    : job_(job), cfg_(stage), tok_(tokenizer) {}

void TeacherGenerateStage::prepare() {
  const std::string path = resolve_data(job_, cfg_.data);
  prompts_ = data::load_jsonl(path);
  const int64_t context = model_context(job_, cfg_.model, tok_);
  stop_tokens_ = data::stop_token_ids(tok_, cfg_.eval.stop, cfg_.where + ": stop");
  for (std::size_t i = 0; i < prompts_.size(); ++i) {
    if (cfg_.filter.require_correct && prompts_[i].answer.empty())
      input_error(path + ":" + std::to_string(i + 1), "example has no \"answer\"",
                  "require_correct needs a reference answer per prompt");
    check_prompt_fits(tok_, data::apply_template(cfg_.prompt_template, prompts_[i].prompt), context,
                      path + ":" + std::to_string(i + 1));
  }
}

const char* TeacherGenerateStage::rejection(const model::Generation& g, const std::string& text,
                                            const std::string& answer) const {
  const FilterConfig& f = cfg_.filter;
  if (!g.stopped) return "incomplete";
  if (degenerate_repetition(g.tokens, f.repeat_ngram, f.repeat_max)) return "repetitive";
  if (f.require_marker && !data::extract_answer(text, cfg_.eval.marker)) return "no answer marker";
  if (f.require_correct && !data::verify(text, answer, cfg_.eval.marker)) return "wrong answer";
  return nullptr;
}

StageOutcome TeacherGenerateStage::run(StopCondition&) {
  const fs::path dir = stage_dir(job_, cfg_.name);
  fs::create_directories(dir);
  auto teacher = load_model(resolve_checkpoint(job_, cfg_.model), tok_.describe(), unsharded_on(job_.run));
  const EvalConfig& ec = cfg_.eval;
  const int64_t n = ec.limit > 0 ? std::min<int64_t>(ec.limit, static_cast<int64_t>(prompts_.size()))
                                 : static_cast<int64_t>(prompts_.size());
  const int64_t items = n * ec.samples;
  std::map<std::string, int64_t> rejected;
  int64_t kept = 0;
  const fs::path out = dir / "samples.jsonl";
  std::ofstream file(out.string() + ".tmp", std::ios::trunc);
  std::vector<std::string> texts;
  for (int64_t i = 0; i < n; ++i)
    texts.push_back(data::apply_template(cfg_.prompt_template, prompts_[static_cast<std::size_t>(i)].prompt));
  model::SamplingConfig sampling = ec.sampling;
  sampling.stop_tokens = stop_tokens_;  // a stop text ends a response as EOS does
  sample_responses(*teacher, tok_, texts, ec.samples, sampling, job_.run.seed, ec.batch_size,
                   [&](int64_t e, int64_t, const model::Generation& g) {
                     const auto& ex = prompts_[static_cast<std::size_t>(e)];
                     const std::string text = tok_.decode(g.tokens);
                     const char* why = rejection(g, text, ex.answer);
                     if (why) {
                       ++rejected[why];
                       return;
                     }
                     nlohmann::json j = {{"prompt", ex.prompt}, {"response", text}, {"answer", ex.answer}};
                     file << j.dump() << '\n';
                     ++kept;
                   });
  file.close();
  if (kept == 0)
    input_error(cfg_.where, "every teacher response was rejected",
                "check the teacher, raise max_new_tokens or relax the filters");
  fs::rename(out.string() + ".tmp", out);
  nlohmann::json summary = {{"stage", cfg_.name}, {"responses", items}, {"kept", kept},
                            {"rejected", rejected}};
  std::ofstream(dir / "results.json") << summary.dump(2) << '\n';
  core::log::info(cfg_.name, ": kept ", kept, " of ", items, " teacher responses (",
                  summary["rejected"].dump(), " rejected)");
  std::ofstream(dir / "DONE") << "kept " << kept << "\n";
  return StageOutcome::Done;
}

}  // namespace opd::distill
