// io/safetensors.hpp: reading and writing safetensors files and Hugging Face model folders.
//
// SafetensorsFile opens one file, reads and validates its header (safetensors_format.hpp) and
// reads tensors on demand with pread (nothing is mapped, so a file changing underneath gives an
// error, never a SIGBUS). SafetensorsFolder is a model folder's weights: `model.safetensors`, or
// the shards that `model.safetensors.index.json` names. write_safetensors_folder writes the same
// layout back, sharded with an index above a size threshold.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "io/safetensors_format.hpp"

namespace opd::io {

inline constexpr const char* kSafetensorsSingle = "model.safetensors";
inline constexpr const char* kSafetensorsIndex = "model.safetensors.index.json";

class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::string path);  // Input error when unreadable or malformed
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const safetensors::Header& header() const { return header_; }
  // The tensor's bytes as stored (little-endian).
  std::vector<unsigned char> read_bytes(const safetensors::TensorEntry& t) const;
  // As a host f32 tensor of the stored shape: F32, F16 and BF16 convert exactly; other dtypes
  // are an Input error naming the tensor.
  core::Tensor read_f32(const safetensors::TensorEntry& t) const;

 private:
  std::string path_;
  int fd_ = -1;
  safetensors::Header header_;
};

class SafetensorsFolder {
 public:
  // `dir` holds model.safetensors or (when that is absent) model.safetensors.index.json and
  // the shards it names. Every shard's header is validated here; a name present twice, an index
  // entry missing from its shard, or a shard name that leaves the folder is an Input error.
  explicit SafetensorsFolder(std::string dir);
  ~SafetensorsFolder();

  const std::string& dir() const { return dir_; }
  bool sharded() const { return files_.size() > 1 || index_; }
  std::vector<std::string> names() const;  // every tensor, sorted
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  // The entry of a tensor (Input error naming the folder when absent) and its file.
  const safetensors::TensorEntry& entry(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  core::Tensor read_f32(const std::string& name) const { return file_of(name).read_f32(entry(name)); }
  std::vector<unsigned char> read_bytes(const std::string& name) const {
    return file_of(name).read_bytes(entry(name));
  }

 private:
  std::string dir_;
  bool index_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<std::size_t, const safetensors::TensorEntry*>> where_;
};

// One tensor to write, and a function that yields its little-endian bytes when its turn comes
// (so a large model is written one tensor at a time).
struct SafetensorsTensor {
  std::string name;
  safetensors::DType dtype = safetensors::DType::F32;
  core::Shape shape;
  uint64_t bytes() const;
};
using TensorBytes = std::function<std::vector<unsigned char>(std::size_t index)>;

// Writes one safetensors file at `path`: tensors' data in the given order, the header padded with
// spaces to a multiple of 8 bytes (aligned data, as the reference writer does), `metadata` as
// __metadata__. Failures (disk full, a wrong byte count from `bytes_of`) are errors; the caller
// owns removing a partial file.
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const TensorBytes& bytes_of,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes the weights of a model folder into `dir` (which must exist): one model.safetensors
// when the data totals at most `max_shard_bytes`, else shards model-0000k-of-0000n.safetensors
// filled in order up to that size (a tensor larger than it gets a shard of its own) and
// model.safetensors.index.json (metadata.total_size and the weight_map). Returns the file names.
std::vector<std::string> write_safetensors_folder(const std::string& dir,
                                                  const std::vector<SafetensorsTensor>& tensors,
                                                  const TensorBytes& bytes_of,
                                                  uint64_t max_shard_bytes);

// "5GB" (10^9), "500MiB" (2^20), "1000" (bytes): the --max-shard-size spelling of Hugging Face.
uint64_t parse_byte_size(const std::string& text, const std::string& where);

}  // namespace opd::io
