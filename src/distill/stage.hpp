// A stage of a job (DESIGN.md §8): prepare() reads and validates everything it needs without
// writing anything (so bad input leaves RUN untouched), run() does the work under RUN/<stage>/,
// resuming from that stage's latest checkpoint, and leaves a DONE marker when finished.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "data/tokenizer.hpp"
#include "distill/stage_config.hpp"
#include "distill/stop_condition.hpp"
#include "comm/topology.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

enum class StageOutcome { Done, Interrupted };

class Stage {
 public:
  virtual ~Stage() = default;
  virtual void prepare() = 0;
  virtual StageOutcome run(StopCondition& stop) = 0;
  // True when every rank of the job takes part in run(); otherwise the root rank runs the stage
  // alone and the others wait for it.
  virtual bool data_parallel() const { return false; }
};

std::unique_ptr<Stage> make_stage(const JobConfig& job, const StageConfig& stage,
                                  const data::Tokenizer& tokenizer, const comm::Topology& topo);

// RUN/<stage>
std::string stage_dir(const JobConfig& job, const std::string& stage_name);
// RUN/<stage>/DONE exists.
bool stage_done(const JobConfig& job, const std::string& stage_name);
// The checkpoint a `model` reference of a later stage names: "@stage" → that stage's latest
// published checkpoint (Input error if it has none); anything else → a path.
std::string resolve_checkpoint(const JobConfig& job, const std::string& ref);
// The context length (max_seq_len) of the model a `model` reference names, known before any
// stage runs: an architecture's, an "@stage"'s source model's (followed back), or a
// checkpoint's.
int64_t model_context(const JobConfig& job, const std::string& ref, const data::Tokenizer& tok);
// The data file a `data` reference names: "@stage" → the JSONL that stage wrote
// (RUN/<stage>/samples.jsonl, from teacher_generate); anything else → a path.
std::string resolve_data(const JobConfig& job, const std::string& ref);
// True when the stage reads data that an earlier stage of this run has not written yet: it is
// prepared (validated) just before it runs instead of before the first stage.
bool waits_for_data(const JobConfig& job, const StageConfig& stage);
// The shape of the model a reference names (vocab_size filled in from the tokenizer).
model::ModelConfig model_config_of(const JobConfig& job, const std::string& ref,
                                   const data::Tokenizer& tok);
// A stage's starting model, sharded over `tp`: a fresh [model.*] initialised from the run seed,
// or the weights of a checkpoint ("@stage" or a path).
std::unique_ptr<model::Transformer> initial_model(const JobConfig& job, const std::string& ref,
                                                  const data::Tokenizer& tok,
                                                  const model::ModelParallel& mp);
// The micro-batches of one update on this rank: [parallel].micro_batches, or one per pipeline
// stage when it is 0.
int micro_batches_of(const JobConfig& job, const comm::Topology& topo);
// This rank's tensor-parallel and pipeline groups (of its role: student or teacher), with the
// job's device and precision ([run] device, precision).
model::ModelParallel model_parallel_of(const comm::Topology& topo, const RunConfig& run);
// A whole model (one rank) on the job's device and precision.
model::ModelParallel unsharded_on(const RunConfig& run);
// Input error unless the model a reference names splits over the layout's tp (named in the
// message as `[parallel].student` or `.teacher`).
void check_model_fits_layout(const JobConfig& job, const std::string& ref,
                             const data::Tokenizer& tok, const comm::Layout& layout,
                             const std::string& role);
// The communicator a checkpoint writer is collective over: this replica's tp x pp ranks (data-
// parallel replica 0 writes; every replica holds the same model). MPI_COMM_NULL (a serial
// writer) when the replica is one rank.
MPI_Comm checkpoint_comm(const comm::Topology& topo);

}  // namespace opd::distill
