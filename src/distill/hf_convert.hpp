// Hugging Face model folders <-> opd checkpoints (`opd convert`).
//
// Import reads config.json and the safetensors weights (one file or shards with an index; F32,
// F16 or BF16, widened exactly to f32) and writes an opd checkpoint laid out as write_model
// does (model_io.hpp: /config/model/*, /config/tokenizer, /model/<HF name>), so load_model and
// every stage read it. It also keeps what export needs to give the folder back unchanged:
// /config/hf/config_json (the original config.json), /config/hf/tensor_dtypes (each tensor's
// stored dtype) and /config/hf/model_type. Tensors are converted one at a time, so memory stays
// at about one tensor beyond HDF5's own.
//
// Export writes config.json and the weights (model.safetensors, or shards and an index above the
// shard size) into a new folder, each tensor in the requested dtype, or by default in the dtype
// it was imported with (f32 for models trained in opd). A tied model omits lm_head.weight, as
// transformers' save_pretrained does.
//
// Both publish atomically: the checkpoint through CheckpointWriter's .tmp and rename, the
// folder as a sibling temporary directory renamed into place. On any error nothing is left
// under the output name; an existing output is refused, never overwritten.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors_format.hpp"
#include "model/model_config.hpp"

namespace opd::distill {

struct HfImportResult {
  std::string model_type;
  model::ModelConfig config;
  int64_t tensors = 0;               // parameters written
  std::vector<std::string> ignored;  // tensors read past: rotary inv_freq buffers, a tied lm_head
};

// tokenizer_id: the identity stored in the checkpoint (Tokenizer::describe()); tokenizer_vocab:
// its vocabulary size, which the embedding's rows must cover (more rows is vocabulary padding).
HfImportResult import_hf(const std::string& dir, const std::string& out_checkpoint,
                         const std::string& tokenizer_id, int64_t tokenizer_vocab);

struct HfExportOptions {
  // Every tensor in this dtype (F32, F16, BF16); unset: each its imported dtype, else F32.
  std::optional<io::safetensors::DType> dtype;
  uint64_t max_shard_bytes = 5'000'000'000;  // transformers' default "5GB"
};

struct HfExportResult {
  std::string model_type;
  std::vector<std::string> files;  // written into the folder, config.json first
  uint64_t weight_bytes = 0;
};

HfExportResult export_hf(const std::string& checkpoint, const std::string& out_dir,
                         const HfExportOptions& opt = {});

// "bf16" / "fp16" / "fp32" (the --dtype spelling) and the names transformers gives them.
io::safetensors::DType parse_export_dtype(const std::string& text, const std::string& where);
const char* torch_dtype_name(io::safetensors::DType dt);

}  // namespace opd::distill
