// io/checkpoint_format.hpp (internal to io/): what CheckpointWriter and CheckpointReader share
// about the file format: attribute names, dataset names, the mapping between tensor dtypes and
// stored HDF5 types, and the file-system steps of an atomic publish.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/tensor.hpp"
#include "io/checkpoint.hpp"
#include "io/hdf5_file.hpp"

namespace opd::io::format {

inline constexpr const char* kChecksumAttr = "fnv1a64";
inline constexpr const char* kDtypeAttr = "dtype";

// Dataset names are slash paths; a leading slash is allowed and dropped (Input error if empty or
// with empty, "." or ".." parts).
std::string normalize_name(const std::string& name);
// The HDF5 file and memory types of a tensor dtype (bf16 is stored as its uint16 bits).
hid_t file_type_of(core::DType dt);
hid_t mem_type_of(core::DType dt);
// The tensor dtype a stored type reads back as (none for strings, u64, f64, ...).
std::optional<core::DType> dtype_of_stored(StoredType t);
// What a dataset holds, from its HDF5 type and `dtype` attribute.
StoredType classify(const h5::Dataset& d);
std::string hex(uint64_t v);
// fsync a file or directory by path: the data (or the rename) must be on disk before `latest`
// points at it, or a crash could publish an empty file.
void fsync_path(const std::string& path, bool directory);
std::string parent_dir(const std::string& path);
// "layers.2" < "layers.10": digit runs compare as numbers, so listings follow layer order.
bool natural_less(const std::string& a, const std::string& b);

}  // namespace opd::io::format
