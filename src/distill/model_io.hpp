// Models in opd checkpoints (DESIGN.md §7): parameters under /model with Hugging Face names (the
// AdamW moments under /optimizer are DataParallelOptimizer's), the architecture under /config/model and
// the tokenizer's identity under /config/tokenizer, so a checkpoint alone rebuilds its model.
#pragma once

#include <memory>
#include <string>

#include "io/checkpoint.hpp"
#include "model/optimizer.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

void write_model(io::CheckpointWriter& w, const model::Transformer& m,
                 const std::string& tokenizer_id);

model::ModelConfig read_model_config(io::CheckpointReader& r);
// Checks that the checkpoint's tokenizer is `tokenizer_id` (Input error otherwise).
void check_tokenizer(io::CheckpointReader& r, const std::string& tokenizer_id);
void read_model_weights(io::CheckpointReader& r, model::Transformer& m);
// A model rebuilt from a checkpoint file (config + weights).
std::unique_ptr<model::Transformer> load_model(const std::string& path,
                                               const std::string& tokenizer_id);

}  // namespace opd::distill
