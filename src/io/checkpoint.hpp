// io/checkpoint.hpp: the opd checkpoint file (DESIGN.md §7): CheckpointWriter writes one HDF5
// file and publishes it atomically; CheckpointReader validates one and reads it back.
//
// File layout: datasets at slash paths (`model/<HF name>`, `optimizer/exp_avg/<HF name>`,
// `state/step`, `config/job_toml`, ...), intermediate groups implied. Every dataset carries the
// attribute `fnv1a64` (u64: FNV-1a of its little-endian bytes; of the UTF-8 text for strings).
// Tensors also carry `dtype` ("f32", "bf16", "i32", "i64"); bf16 is stored as uint16 bits, since
// HDF5 has no bfloat16. Root attributes: `format = "opd-checkpoint"`, `format_version = 1`, plus
// whatever the caller sets (the layout at save time).
//
// Tensors are written as blocks of their GLOBAL shape and read as any block (resharding on
// load). The writer is serial (MPI_COMM_NULL, or a communicator of one rank) or parallel: one
// file written collectively with parallel HDF5 by every rank of a communicator, each rank its
// hyperslab (see "Parallel writing" below). The reader is always serial: every rank opens the
// published file read-only on its own and reads the blocks it needs.
// For the directory of checkpoints (step names, `latest`, pruning) see checkpoint_dir.hpp.
//
// Parallel writing (a communicator of more than one rank):
// - Every method of CheckpointWriter (constructor and commit() included) is COLLECTIVE: all
//   ranks call the same methods in the same order, with the same names, global shapes, dtypes,
//   scalar/string/vector values and attributes. Each call first checks that the ranks agree
//   (one small MPI_Allgather): when they do not, or when a rank's own arguments are bad, EVERY
//   rank throws the same opd::Error (the first failing rank's, or "ranks made different
//   collective calls" naming two of them), the file is closed and the writer is dead (commit()
//   then throws too, and destruction removes the .tmp).
// - write_tensor: each rank passes its own block (`local` at `offset`). A rank holding nothing
//   of the dataset passes an EMPTY block: a host tensor of the dataset's dtype with no elements
//   (a zero-size dim, e.g. Tensor::empty({0, cols}, dtype)); its shape and offset are then
//   ignored, but `global_shape` must still be given. Replicated data (a norm gain every tensor-
//   parallel rank holds whole) is written by every rank at the same offset: IDENTICAL blocks
//   (same offset and shape) are written once, by the lowest rank passing them; the others take
//   part with an empty selection. Blocks that overlap partially are all written and must hold
//   identical data where they overlap (MPI-IO does not order overlapping writes).
// - write_string/int/double/ints/u64s and set_attribute: every rank passes the same value
//   (checked); comm rank 0 writes the data, the others take part selecting nothing.
// - commit(): checks coverage (the union of every rank's blocks must cover each dataset; the
//   blocks are known to every rank, so every rank reaches the same verdict), closes the file
//   collectively, has each rank checksum a share of the tensors (dataset k is read whole by
//   rank k mod size from the closed file), reduces the checksums, and rank 0 stamps them,
//   fsyncs, renames .tmp -> final and fsyncs the directory. The outcome is broadcast: all ranks
//   throw the same error, or all return after the file is published.
// - HDF5/MPI failures INSIDE a collective HDF5 call (a write failing on one rank) may leave the
//   other ranks waiting in that call: a caller that catches an exception from a parallel writer
//   on one rank must end the job (comm::abort_all, MPI_Abort). The destructor makes no
//   collective call: it only removes the .tmp (rank 0); a parallel file still open then is left
//   to HDF5, which closes it at MPI_Finalize.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"
#include "io/checkpoint_dir.hpp"  // for callers that include only this header

namespace opd::io {

using core::Shape;

inline constexpr const char* kCheckpointFormat = "opd-checkpoint";
inline constexpr int64_t kCheckpointFormatVersion = 1;

// What a dataset holds, as stored.
enum class StoredType { F32, BF16, I32, I64, U64, F64, String, Other };
const char* stored_type_name(StoredType t);  // "f32", "bf16", ..., "string", "other"

struct DatasetInfo {
  std::string name;  // slash path without a leading slash
  StoredType type = StoredType::Other;
  Shape shape;             // {} for a scalar (and for a string)
  bool is_tensor = false;  // written by write_tensor (has a `dtype` attribute)
  int64_t numel() const { return core::shape_numel(shape); }
};

class CheckpointWriter {
 public:
  // Creates `final_path + ".tmp"` (and the parent directories). Nothing appears under
  // `final_path` until commit(). `comm`: MPI_COMM_NULL or a communicator of one rank writes
  // serially (no MPI call is made for MPI_COMM_NULL); a communicator of several ranks writes
  // one file collectively (see "Parallel writing" above; the constructor is collective too).
  // The writer uses `comm` itself (no duplicate) for its collectives, and it must stay valid
  // until the writer is destroyed.
  explicit CheckpointWriter(std::string final_path, MPI_Comm comm = MPI_COMM_NULL);
  // Without commit(): closes and removes the .tmp, so an interrupted save leaves nothing.
  // Parallel: no collective call; rank 0 removes the .tmp, and a file still open (the writer
  // was abandoned without a collective failure) is left for HDF5 to close at MPI_Finalize.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  const std::string& final_path() const;
  const std::string& temp_path() const;

  // Writes the host tensor `local` (F32, BF16, I32, I64) as the block at `offset` of the dataset
  // `name` of shape `global_shape`. Defaults: global = local's shape, offset = 0 (the whole).
  // The first call creates the dataset; further calls for the same name write further blocks
  // (same global shape and dtype). A dataset written in blocks gets its checksum at commit(),
  // which checks that the union of the blocks covers every element (identical blocks written
  // twice count once). Parallel: collective, each rank its own block or an empty one (above);
  // every tensor is then block-written and checksummed at commit().
  void write_tensor(const std::string& name, const core::Tensor& local,
                    const Shape& global_shape = {}, const Shape& offset = {});
  void write_string(const std::string& name, const std::string& text);  // UTF-8, no NUL bytes
  void write_int(const std::string& name, int64_t value);
  void write_double(const std::string& name, double value);
  void write_ints(const std::string& name, const std::vector<int64_t>& values);
  void write_u64s(const std::string& name, const std::vector<uint64_t>& values);

  // Root attributes (layout info etc.). `format` and `format_version` are reserved.
  void set_attribute(const std::string& name, const std::string& value);
  void set_attribute(const std::string& name, const char* value) {
    set_attribute(name, std::string(value));
  }
  void set_attribute(const std::string& name, int64_t value);

  // Finishes block checksums, closes the file, fsyncs it, renames .tmp -> final (atomic on
  // POSIX, replacing an older file of that name) and fsyncs the directory. Afterwards the
  // writer accepts nothing more. Failures are Input errors (disk full, permissions); blocks
  // that leave elements unwritten are an Internal error "dataset 'x' blocks cover N of M
  // elements" (nothing is published). Parallel: collective; no rank returns before the file
  // is published, and on failure every rank throws the same error.
  void commit();
  bool committed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CheckpointReader {
 public:
  // Opens and validates: the path must exist, not end in `.tmp` (unpublished), be readable
  // HDF5, and carry format = "opd-checkpoint" with a format_version this build understands.
  // Each failure is an Input error naming the path.
  explicit CheckpointReader(std::string path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const;
  int64_t format_version() const;

  // True when an object (dataset or group) exists at `name`.
  bool has(const std::string& name) const;
  DatasetInfo info(const std::string& name) const;
  // Every dataset, in natural name order (layers.2 before layers.10).
  std::vector<DatasetInfo> list() const;

  // The whole tensor, checksum verified (mismatch: Input error naming the dataset).
  core::Tensor read_tensor(const std::string& name) const;
  // The block [offset, offset + count) (resharded loads). A block smaller than the dataset is
  // not checksummed (that needs every byte); call verify() when that matters.
  core::Tensor read_block(const std::string& name, const Shape& offset,
                          const Shape& count) const;
  // Into an existing host tensor: dtype must match; with an empty offset the dataset's shape
  // must equal dst's (and the checksum is verified), otherwise dst receives the block at offset.
  void read_tensor_into(const std::string& name, core::Tensor& dst,
                        const Shape& offset = {}) const;
  // Reads the whole dataset and checks its checksum.
  void verify(const std::string& name) const;
  // The checksum stamped on a dataset when it was written (a digest of its bytes, read without
  // reading the data: identities of whole models are made from these).
  uint64_t stored_checksum(const std::string& name) const;

  std::string read_string(const std::string& name) const;
  int64_t read_int(const std::string& name) const;
  double read_double(const std::string& name) const;
  std::vector<int64_t> read_ints(const std::string& name) const;
  std::vector<uint64_t> read_u64s(const std::string& name) const;

  // Root attributes.
  bool has_attribute(const std::string& name) const;
  std::string attribute_string(const std::string& name) const;
  int64_t attribute_int(const std::string& name) const;
  // Every root attribute as (name, value as text), in name order.
  std::vector<std::pair<std::string, std::string>> attributes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace opd::io
