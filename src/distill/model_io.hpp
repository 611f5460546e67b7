// Models in opd checkpoints (DESIGN.md §7): parameters under /model with Hugging Face names (the
// AdamW moments under /optimizer are DataParallelOptimizer's), the architecture under /config/model and
// the tokenizer's identity under /config/tokenizer, so a checkpoint alone rebuilds its model.
// Parameters are stored at their global shape; a tensor-parallel rank writes and reads its own
// block, so a checkpoint loads at any tensor-parallel size. Tensors on a GPU pass through host
// memory on their way to and from the file (io/ sees host tensors only).
#pragma once

#include <memory>
#include <string>

#include "io/checkpoint.hpp"
#include "model/optimizer.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

// x itself when it lives on the host, else a host copy of it.
core::Tensor host_copy(const core::Tensor& x);

// The architecture under /config/model and the tokenizer's identity under /config/tokenizer
// (read_model_config reads them back).
void write_model_config(io::CheckpointWriter& w, const model::ModelConfig& c,
                        const std::string& tokenizer_id);

// Collective over the writer's ranks (the tp ranks of one replica): each writes its shards.
void write_model(io::CheckpointWriter& w, const model::Transformer& m,
                 const std::string& tokenizer_id);

model::ModelConfig read_model_config(io::CheckpointReader& r);
// Checks that the checkpoint's tokenizer is `tokenizer_id` (Input error otherwise).
void check_tokenizer(io::CheckpointReader& r, const std::string& tokenizer_id);
// Reads one parameter's block for `p` (its shard, or the whole) into dst, after checking the
// stored global shape.
void read_shard(io::CheckpointReader& r, const std::string& name, const model::Param& p,
                core::Tensor& dst);
// This rank's shard of every parameter (checksums: whole parameters on read, shards shared out
// over the tensor-parallel group).
void read_model_weights(io::CheckpointReader& r, model::Transformer& m);
// The identity of the model a checkpoint holds: SHA-256 over its architecture, its tokenizer and
// every parameter's stored checksum (a digest of the bytes, so no tensor is read). Equal for
// two files with the same weights; the distill stage records its teacher's in the student's
// checkpoints (/teacher/hash) and checks it on resume.
std::string model_content_hash(io::CheckpointReader& r);

// A model rebuilt from a checkpoint file (config + weights), sharded as `mp` says.
// On mp's device (read on the host and copied there) in mp's precision.
std::unique_ptr<model::Transformer> load_model(const std::string& path,
                                               const std::string& tokenizer_id,
                                               const model::ModelParallel& mp = {});

}  // namespace opd::distill
