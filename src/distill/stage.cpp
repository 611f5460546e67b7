#include "distill/stage.hpp"

#include "comm/mpi_native.hpp"

#include <filesystem>

#include "core/error.hpp"
#include "distill/distill_stage.hpp"
#include "distill/eval_stage.hpp"
#include "distill/model_io.hpp"
#include "distill/teacher_generate_stage.hpp"
#include "distill/train_stage.hpp"
#include "io/checkpoint.hpp"

namespace opd::distill {

namespace fs = std::filesystem;

std::unique_ptr<Stage> make_stage(const JobConfig& job, const StageConfig& stage,
                                  const data::Tokenizer& tokenizer, const comm::Topology& topo) {
  if (stage.kind == "pretrain" || stage.kind == "sft")
    return std::make_unique<TrainStage>(job, stage, tokenizer, topo);
  if (stage.kind == "eval") return std::make_unique<EvalStage>(job, stage, tokenizer, topo);
  if (stage.kind == "distill") return std::make_unique<DistillStage>(job, stage, tokenizer, topo);
  if (stage.kind == "teacher_generate")
    return std::make_unique<TeacherGenerateStage>(job, stage, tokenizer);
  input_error(stage.where, "unknown stage kind '" + stage.kind + "'",
              "use pretrain, sft, eval, distill or teacher_generate");
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

std::string resolve_data(const JobConfig& job, const std::string& ref) {
  if (ref.rfind('@', 0) != 0) return ref;
  return (fs::path(stage_dir(job, ref.substr(1))) / "samples.jsonl").string();
}

bool waits_for_data(const JobConfig& job, const StageConfig& stage) {
  for (const std::string* ref : {&stage.data, &stage.distill.eval_data})
    if (ref->rfind('@', 0) == 0 && !stage_done(job, ref->substr(1))) return true;
  return false;
}

model::ModelConfig model_config_of(const JobConfig& job, const std::string& ref,
                                   const data::Tokenizer& tok) {
  if (ref.rfind('@', 0) == 0) {
    for (const auto& s : job.stages)
      if (s.name == ref.substr(1)) return model_config_of(job, s.model, tok);
    input_error(ref, "names no stage of this job", "use \"@NAME\" of an earlier stage");
  }
  auto it = job.models.find(ref);
  if (it != job.models.end()) {
    model::ModelConfig mc = it->second;
    if (mc.vocab_size == 0) mc.vocab_size = tok.vocab_size();
    return mc;
  }
  if (!fs::exists(ref))
    input_error(ref, "is neither a [model.*] table, an \"@stage\" nor an existing checkpoint",
                "define the model or fix the path");
  io::CheckpointReader r(ref);
  check_tokenizer(r, tok.describe());
  return read_model_config(r);
}

int64_t model_context(const JobConfig& job, const std::string& ref, const data::Tokenizer& tok) {
  return model_config_of(job, ref, tok).max_seq_len;
}

std::unique_ptr<model::Transformer> initial_model(const JobConfig& job, const std::string& ref,
                                                  const data::Tokenizer& tok,
                                                  const model::ModelParallel& mp) {
  auto it = job.models.find(ref);
  if (it != job.models.end()) {
    auto m = std::make_unique<model::Transformer>(model_config_of(job, ref, tok), mp);
    m->init_weights(job.run.seed);
    return m;
  }
  return load_model(resolve_checkpoint(job, ref), tok.describe(), mp);
}

int micro_batches_of(const JobConfig& job, const comm::Topology& topo) {
  return job.parallel.micro_batches > 0 ? job.parallel.micro_batches : topo.layout().pp;
}

model::ModelParallel unsharded_on(const RunConfig& run) {
  model::ModelParallel mp;
  mp.device = run.device == "cuda" ? core::Device::Cuda : core::Device::Host;
  mp.compute = run.precision == "bf16" ? core::DType::BF16 : core::DType::F32;
  return mp;
}

model::ModelParallel model_parallel_of(const comm::Topology& topo, const RunConfig& run) {
  model::ModelParallel mp = unsharded_on(run);
  mp.tp = parallel::TensorParallel(topo.tp());
  mp.pp = parallel::PipelineParallel(topo.pp());
  return mp;
}

void check_model_fits_layout(const JobConfig& job, const std::string& ref,
                             const data::Tokenizer& tok, const comm::Layout& layout,
                             const std::string& role) {
  if (layout.tp <= 1 && layout.pp <= 1) return;
  const std::string where = job.models.count(ref) ? job.path + ": model." + ref : ref;
  model_config_of(job, ref, tok).check_layout(layout.tp, layout.pp, where, "parallel." + role);
}

MPI_Comm checkpoint_comm(const comm::Topology& topo) {
  return topo.replica().size() > 1 ? comm::mpi_comm(topo.replica()) : MPI_COMM_NULL;
}

}  // namespace opd::distill
