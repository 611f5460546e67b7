// AdamW across data-parallel replicas (DESIGN.md §6): gradients summed over the replicas in
// buckets that start during the backward pass, then clipping and AdamW. With ZeRO-1 (parallel.zero = 1) each replica keeps the AdamW
// moments of the parameters it owns only, updates those and broadcasts them to the others; the
// checkpoint still holds every moment at its global shape (gathered to the writing rank), so it
// loads at any data-parallel size. With tensor parallelism every tp rank of data-parallel replica 0
// writes its shards' moments (the writer is collective over those ranks).
#pragma once

#include <vector>

#include "comm/communicator.hpp"
#include "io/checkpoint.hpp"
#include "model/optimizer.hpp"
#include "model/param_specs.hpp"
#include "model/transformer.hpp"
#include "parallel/gradient_buckets.hpp"
#include "model/parameters.hpp"

namespace opd::distill {

class DataParallelOptimizer {
 public:
  // Hooks into the model so that each bucket of gradients starts its all-reduce as soon as the
  // last backward pass of an update has finished it.
  DataParallelOptimizer(model::Transformer& model, const comm::Communicator& dp, bool zero);
  ~DataParallelOptimizer();
  DataParallelOptimizer(const DataParallelOptimizer&) = delete;
  DataParallelOptimizer& operator=(const DataParallelOptimizer&) = delete;

  // All ranks: finish the gradient reduction, step, and (ZeRO-1) share the updated parameters.
  // Returns the pre-clip global gradient norm.
  double step(const model::OptimConfig& cfg, double lr);

  // All ranks call these. write: the writer exists on dp rank 0 only (nullptr elsewhere); the
  // owners send their moments there; `specs` are every parameter of the model (a pipeline stage
  // writes empty blocks for the others'). read: each rank reads the moments it owns.
  void write(io::CheckpointWriter* w, const std::vector<model::ParamSpec>& specs);
  void read(io::CheckpointReader& r);

 private:
  model::Transformer& model_;
  model::ParamSet& params_;
  comm::Communicator dp_;
  parallel::GradientBuckets buckets_;
  bool zero_;
  std::vector<int> owner_;  // ZeRO-1: the dp rank that updates each parameter
  model::AdamW adam_;
};

}  // namespace opd::distill
