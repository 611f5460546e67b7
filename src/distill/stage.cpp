#include "distill/stage.hpp"

#include <filesystem>

#include "core/error.hpp"
#include "distill/eval_stage.hpp"
#include "distill/model_io.hpp"
#include "distill/train_stage.hpp"
#include "io/checkpoint.hpp"

namespace opd::distill {

namespace fs = std::filesystem;

std::unique_ptr<Stage> make_stage(const JobConfig& job, const StageConfig& stage,
                                  const data::Tokenizer& tokenizer) {
  if (stage.kind == "pretrain" || stage.kind == "sft")
    return std::make_unique<TrainStage>(job, stage, tokenizer);
  if (stage.kind == "eval") return std::make_unique<EvalStage>(job, stage, tokenizer);
  input_error(stage.where, "unknown stage kind '" + stage.kind + "'",
              "use pretrain, sft or eval");
}

std::string stage_dir(const JobConfig& job, const std::string& stage_name) {
  return (fs::path(job.run.dir) / stage_name).string();
}

bool stage_done(const JobConfig& job, const std::string& stage_name) {
  return fs::exists(fs::path(stage_dir(job, stage_name)) / "DONE");
}

std::string resolve_checkpoint(const JobConfig& job, const std::string& ref) {
  if (ref.rfind('@', 0) != 0) return ref;
  const std::string name = ref.substr(1);
  io::CheckpointDir dir((fs::path(stage_dir(job, name)) / "checkpoints").string());
  auto latest = dir.latest_path();
  if (!latest)
    input_error(ref, "stage '" + name + "' has no published checkpoint",
                "run that stage first (it runs before this one in the same job)");
  return *latest;
}

int64_t model_context(const JobConfig& job, const std::string& ref, const data::Tokenizer& tok) {
  if (ref.rfind('@', 0) == 0) {
    for (const auto& s : job.stages)
      if (s.name == ref.substr(1)) return model_context(job, s.model, tok);
    input_error(ref, "names no stage of this job", "use \"@NAME\" of an earlier stage");
  }
  auto it = job.models.find(ref);
  if (it != job.models.end()) return it->second.max_seq_len;
  if (!fs::exists(ref))
    input_error(ref, "is neither a [model.*] table, an \"@stage\" nor an existing checkpoint",
                "define the model or fix the path");
  io::CheckpointReader r(ref);
  check_tokenizer(r, tok.describe());
  return read_model_config(r).max_seq_len;
}

}  // namespace opd::distill
