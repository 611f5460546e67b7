// io/safetensors_format.hpp: the safetensors header (Hugging Face's weight format), parsed with
// every bound checked. A file is: an 8-byte little-endian header length N, N bytes of JSON, then
// the data section. The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} (byte offsets into the data section), plus an optional "__metadata__" object of strings.
//
// Nothing here trusts the file: the length must fit the file and a size limit, the JSON is
// parsed with a nesting limit and duplicate keys refused, shapes are non-negative and their byte
// size may not overflow, offsets lie inside the data section, agree with dtype x shape and do not
// overlap. Every violation is an Input error naming the file and, where there is one, the tensor.
// This is the entry point the fuzzer drives (tests/fuzz/fuzz_safetensors.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.hpp"

namespace opd::io::safetensors {

// The dtypes of the safetensors format (each element a whole number of bytes).
enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };
const char* dtype_name(DType dt);  // as spelled in headers: "BF16", "F32", ...
std::size_t dtype_size(DType dt);
std::optional<DType> parse_dtype(std::string_view name);

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
inline constexpr int kMaxJsonDepth = 8;   // a valid header nests 3 deep (root, entry, shape)
inline constexpr std::size_t kMaxRank = 32;

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  core::Shape shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
  uint64_t bytes() const { return end - begin; }
  int64_t numel() const { return core::shape_numel(shape); }
};

struct Header {
  uint64_t file_size = 0;
  uint64_t data_start = 0;  // 8 + header length: where the data section begins in the file
  std::vector<TensorEntry> tensors;  // ordered by position in the data section
  std::map<std::string, std::string> metadata;
  uint64_t data_bytes() const { return file_size - data_start; }
  const TensorEntry* find(const std::string& name) const;  // null when absent
};

// The header length from a file's first 8 bytes, checked against the file size and the limit.
uint64_t header_length(const unsigned char* first8, uint64_t file_size, const std::string& where);
// The JSON header text of a file of `file_size` bytes (its length is json.size()).
Header parse_header(std::string_view json, uint64_t file_size, const std::string& where);
// A whole file held in memory: both steps.
Header parse_buffer(const void* data, std::size_t size, const std::string& where);

// Other JSON that comes with model files (config.json, the shard index): parsed with a nesting
// limit and duplicate keys refused, as the header is, so that nothing later (printing a value
// in a message, say) recurses without bound. Errors are Input errors naming `where`.
nlohmann::json parse_json_limited(std::string_view text, const std::string& where, int max_depth);
// A name taken from a file, fit for a one-line message: JSON-quoted, non-ASCII and control
// bytes escaped, long names cut.
std::string printable(const std::string& name);

}  // namespace opd::io::safetensors
