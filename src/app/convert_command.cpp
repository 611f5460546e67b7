// `opd convert --from-hf DIR --out CKPT.h5 [--tokenizer SPEC]` and
// `opd convert --to-hf CKPT.h5 --out DIR [--dtype bf16|fp16|fp32] [--max-shard-size 5GB]`:
// Hugging Face safetensors model folders to and from opd checkpoints (distill/hf_convert.hpp).
#include <CLI/CLI.hpp>

#include <filesystem>

#include "app/commands.hpp"
#include "comm/mpi_runtime.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "data/tokenizer.hpp"
#include "distill/hf_convert.hpp"
#include "io/safetensors.hpp"

namespace opd::app {

namespace {

namespace fs = std::filesystem;

struct ConvertArgs {
  std::string from_hf, to_hf, out, tokenizer, dtype, max_shard_size = "5GB";
};

int run_convert(const ConvertArgs& a) {
  if (comm::world_size() > 1)
    input_error("convert", "opd convert runs as one process", "start it without mpirun/srun");
  if (a.from_hf.empty() == a.to_hf.empty())
    input_error("convert", "give exactly one of --from-hf DIR and --to-hf CKPT");
  if (!a.from_hf.empty()) {
    if (!a.dtype.empty()) input_error("convert --from-hf", "--dtype applies to --to-hf (imports are f32)");
    // The checkpoint records its tokenizer's identity (stages check it against the job's): the
    // folder's own tokenizer.json unless --tokenizer names another.
    std::string spec = a.tokenizer;
    if (spec.empty()) {
      const fs::path own = fs::path(a.from_hf) / "tokenizer.json";
      std::error_code ec;
      if (!fs::is_regular_file(own, ec))
        input_error("convert --from-hf", a.from_hf + " has no tokenizer.json, so --tokenizer SPEC is required",
                    "the checkpoint records its tokenizer's identity: give hf:PATH/tokenizer.json, "
                    "tiktoken:PATH or char");
      spec = "hf:" + own.string();
    }
    auto tok = data::make_tokenizer(spec);
    core::log::info("tokenizer: ", spec, " (", tok->vocab_size(), " tokens)");
    const auto r = distill::import_hf(a.from_hf, a.out, tok->describe(), tok->vocab_size());
    core::log::info("imported ", r.model_type, " model (", r.config.describe(), "): ", r.tensors,
                    " tensors", r.ignored.empty() ? "" : ", " + std::to_string(r.ignored.size()) + " ignored",
                    " -> ", a.out);
    return 0;
  }
  if (!a.tokenizer.empty())
    input_error("convert --to-hf", "--tokenizer applies to --from-hf (the checkpoint names its own)");
  distill::HfExportOptions opt;
  if (!a.dtype.empty()) opt.dtype = distill::parse_export_dtype(a.dtype, "--dtype");
  opt.max_shard_bytes = io::parse_byte_size(a.max_shard_size, "--max-shard-size");
  const auto r = distill::export_hf(a.to_hf, a.out, opt);
  std::string files;
  for (const auto& f : r.files) files += (files.empty() ? "" : ", ") + f;
  core::log::info("exported ", r.model_type, " model (", r.weight_bytes, " bytes of weights) -> ",
                  a.out, ": ", files);
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand(
      "convert", "Hugging Face safetensors model folders to and from opd checkpoints");
  auto a = std::make_shared<ConvertArgs>();
  auto* from = cmd->add_option("--from-hf", a->from_hf,
                               "Import: a model folder (config.json, model.safetensors or shards + index)");
  auto* to = cmd->add_option("--to-hf", a->to_hf, "Export: an opd checkpoint (.h5)");
  from->excludes(to);
  cmd->add_option("--out", a->out, "The checkpoint (import) or folder (export) to create")->required();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "Import: the tokenizer whose identity the checkpoint records: hf:PATH, tiktoken:PATH "
                  "or char (default: hf:DIR/tokenizer.json)");
  cmd->add_option("--dtype", a->dtype,
                  "Export: bf16 | fp16 | fp32 (default: each tensor's imported dtype, else fp32)");
  cmd->add_option("--max-shard-size", a->max_shard_size,
                  "Export: shard above this size (bytes, or 5GB, 500MiB, ...)")->capture_default_str();
  cmd->callback([a, &status] { status = run_convert(*a); });
}

}  // namespace opd::app
