// Every parameter of a decoder, in the one fixed order (embedding, then each layer's, then the
// final norm and the untied head): Hugging Face name, global shape, weight decay, the axis tensor
// parallelism shards (-1: replicated) and where in the pipeline it lives. The model builds its
// shards from this list, initialisation draws parameter i from Philox stream i whatever the
// layout, and checkpoint writers walk it so that every rank names every dataset in the same
// order (collective parallel HDF5).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "model/model_config.hpp"

namespace opd::model {

struct ParamSpec {
  std::string name;
  core::Shape shape;     // global
  bool decay = true;
  int shard_axis = -1;   // tensor parallelism: 0 rows, 1 columns, -1 replicated
  // Pipeline placement: the layer it belongs to, or kFirstStage (embedding) / kLastStage (final
  // norm, untied head).
  int64_t layer = 0;
  static constexpr int64_t kFirstStage = -1, kLastStage = -2;
};

std::vector<ParamSpec> parameter_specs(const ModelConfig& cfg);

}  // namespace opd::model
