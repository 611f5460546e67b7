// io/safetensors_format.cpp: the checked safetensors header parser (see safetensors_format.hpp).
// It depends on nothing but core/error and nlohmann-json, so the fuzzer links it alone.
#include "io/safetensors_format.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace opd::io::safetensors {

namespace {

using json = nlohmann::json;

struct DTypeInfo {
  DType dt;
  const char* name;
  std::size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},   {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I16, "I16", 2},         {DType::U16, "U16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::I32, "I32", 4}, {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},         {DType::F64, "F64", 8}, {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
};

const DTypeInfo& info(DType dt) {
  for (const auto& d : kDTypes)
    if (d.dt == dt) return d;
  return kDTypes[0];  // unreachable: every enumerator is listed
}

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDTypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// A name as it may appear in a message: bounded, control bytes escaped (the name is the file's).
std::string quoted(const std::string& name) {
  json j = name.size() > 80 ? name.substr(0, 80) + "..." : name;
  return j.dump(-1, ' ', true, json::error_handler_t::replace);
}

constexpr const char* kNotSafetensors = "not a valid safetensors file: truncated, damaged or not safetensors at all";

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  input_error(where, what, kNotSafetensors);
}

// Nesting beyond max_depth and duplicate keys in any object are refused while parsing (nlohmann
// would keep the last duplicate silently; two entries for one tensor name must not pass
// unnoticed). `what` names the text in messages ("header JSON").
json parse_checked(std::string_view text, const std::string& where, int max_depth, const std::string& what,
                   const std::string& hint) {
  std::vector<std::set<std::string>> keys;  // keys seen so far per open object, by depth
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    const auto d = static_cast<std::size_t>(depth);
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= max_depth)
          input_error(where, what + " nests deeper than " + std::to_string(max_depth) + " levels", hint);
        if (ev == json::parse_event_t::object_start) {
          if (keys.size() < d + 2) keys.resize(d + 2);
          keys[d + 1].clear();
        }
        break;
      case json::parse_event_t::key:
        if (d < keys.size() && !keys[d].insert(parsed.get<std::string>()).second)
          input_error(where, what + " has the key " + quoted(parsed.get<std::string>()) + " twice", hint);
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    input_error(where, what + " is not valid JSON: " + e.what(), hint);
  }
}

uint64_t to_u64(const json& v, const std::string& where, const std::string& what) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    bad(where, what + " must be a non-negative integer, got " + v.dump(-1, ' ', true, json::error_handler_t::replace));
  return v.get<uint64_t>();
}

TensorEntry parse_entry(const std::string& name, const json& e, uint64_t data_bytes,
                        const std::string& where) {
  const std::string tw = "tensor " + quoted(name);
  if (!e.is_object()) bad(where, tw + ": entry must be an object with dtype, shape, data_offsets");
  for (const auto& [k, v] : e.items())
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      bad(where, tw + ": unknown field " + quoted(k));
  if (!e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    bad(where, tw + ": entry needs dtype, shape and data_offsets");
  TensorEntry t;
  t.name = name;
  const json& dt = e.at("dtype");
  std::optional<DType> parsed = dt.is_string() ? parse_dtype(dt.get<std::string>()) : std::nullopt;
  if (!parsed)
    bad(where, tw + ": unknown dtype " + dt.dump(-1, ' ', true, json::error_handler_t::replace) +
                   " (known: " + known_dtypes() + ")");
  t.dtype = *parsed;

  const json& shape = e.at("shape");
  if (!shape.is_array()) bad(where, tw + ": shape must be an array of integers");
  if (shape.size() > kMaxRank)
    bad(where, tw + ": shape has " + std::to_string(shape.size()) + " dimensions (at most " +
                   std::to_string(kMaxRank) + ")");
  // Bytes = product of dims x element size, every step checked against overflow (and each dim
  // and the element count must fit int64, opd's Shape).
  constexpr uint64_t kMaxI64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  for (const json& d : shape) {
    uint64_t n = to_u64(d, where, tw + ": each shape dimension");
    if (n > kMaxI64) bad(where, tw + ": shape dimension " + std::to_string(n) + " is too large");
    if (__builtin_mul_overflow(numel, n, &numel) || numel > kMaxI64)
      bad(where, tw + ": shape " + shape.dump() + " has too many elements");
    t.shape.push_back(static_cast<int64_t>(n));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &bytes))
    bad(where, tw + ": shape " + shape.dump() + " is too large in bytes");

  const json& off = e.at("data_offsets");
  if (!off.is_array() || off.size() != 2) bad(where, tw + ": data_offsets must be [begin, end]");
  t.begin = to_u64(off[0], where, tw + ": data_offsets begin");
  t.end = to_u64(off[1], where, tw + ": data_offsets end");
  if (t.begin > t.end)
    bad(where, tw + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                   "] end before they begin");
  if (t.end > data_bytes)
    bad(where, tw + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                   "] run past the data section (" + std::to_string(data_bytes) + " bytes)");
  if (t.end - t.begin != bytes)
    bad(where, tw + ": data_offsets span " + std::to_string(t.end - t.begin) + " bytes, but " +
                   dtype_name(t.dtype) + " " + shape.dump() + " needs " + std::to_string(bytes));
  return t;
}

}  // namespace

json parse_json_limited(std::string_view text, const std::string& where, int max_depth) {
  return parse_checked(text, where, max_depth, "the file", {});
}

std::string printable(const std::string& name) { return quoted(name); }

const char* dtype_name(DType dt) { return info(dt).name; }
std::size_t dtype_size(DType dt) { return info(dt).size; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dt;
  return std::nullopt;
}

const TensorEntry* Header::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

uint64_t header_length(const unsigned char* first8, uint64_t file_size, const std::string& where) {
  if (file_size < 8)
    bad(where, "file of " + std::to_string(file_size) +
                   " bytes is too short for the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];  // little-endian
  if (n > file_size - 8)
    bad(where, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(file_size) + " bytes)");
  if (n > kMaxHeaderBytes)
    bad(where, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (n < 2) bad(where, "header of " + std::to_string(n) + " bytes cannot hold a JSON object");
  return n;
}

Header parse_header(std::string_view text, uint64_t file_size, const std::string& where) {
  if (text.size() > kMaxHeaderBytes || text.size() > file_size || file_size - text.size() < 8)
    bad(where, "header of " + std::to_string(text.size()) + " bytes does not fit a file of " +
                   std::to_string(file_size) + " bytes");
  Header h;
  h.file_size = file_size;
  h.data_start = 8 + text.size();
  const json j = parse_checked(text, where, kMaxJsonDepth, "header", kNotSafetensors);
  if (!j.is_object()) bad(where, "header must be a JSON object");
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) bad(where, "__metadata__ must be an object of strings");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) bad(where, "__metadata__ value of " + quoted(k) + " must be a string");
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (name.empty()) bad(where, "a tensor has an empty name");
    h.tensors.push_back(parse_entry(name, value, h.data_bytes(), where));
  }
  // No two tensors may share bytes: in data order each must begin where the previous ended or
  // later. (Empty tensors own no bytes.)
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorEntry* prev = nullptr;
  for (const auto& t : h.tensors) {
    if (t.begin == t.end) continue;
    if (prev && t.begin < prev->end)
      bad(where, "tensors " + quoted(prev->name) + " and " + quoted(t.name) +
                     " overlap in the data section");
    prev = &t;
  }
  return h;
}

Header parse_buffer(const void* data, std::size_t size, const std::string& where) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  const uint64_t n = header_length(bytes, size, where);
  return parse_header(std::string_view(reinterpret_cast<const char*>(bytes) + 8, n), size, where);
}

}  // namespace opd::io::safetensors
