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
// Parallel-ready: tensors are written as blocks of their GLOBAL shape (each rank its hyperslab),
// and read as any block (resharding on load). Single-rank now: the default block is the whole.
// For the directory of checkpoints (step names, `latest`, pruning) see checkpoint_dir.hpp.
#pragma once

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
  // `final_path` until commit().
  explicit CheckpointWriter(std::string final_path);
  // Without commit(): closes and removes the .tmp, so an interrupted save leaves nothing.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  const std::string& final_path() const;
  const std::string& temp_path() const;

  // Writes the host tensor `local` (F32, BF16, I32, I64) as the block at `offset` of the dataset
  // `name` of shape `global_shape`. Defaults: global = local's shape, offset = 0 (the whole).
  // The first call creates the dataset; further calls for the same name write further blocks
  // (same global shape and dtype). A dataset written in blocks gets its checksum at commit(),
  // which checks that the blocks covered every element.
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
  // writer accepts nothing more. Failures are Input errors (disk full, permissions).
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
