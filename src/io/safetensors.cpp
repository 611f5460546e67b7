// io/safetensors.cpp: safetensors files and model folders (see safetensors.hpp).
#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/safetensors_dtype.hpp"

namespace opd::io {

namespace fs = std::filesystem;
using json = nlohmann::json;
using safetensors::DType;
using safetensors::TensorEntry;

namespace {

constexpr uint64_t kMaxIndexBytes = 64ull << 20;  // an index of a million tensors is ~60 MB
constexpr int kMaxIndexDepth = 16;                 // a valid index nests 2 deep

// Reads exactly `n` bytes at `offset`; a short file (it shrank since the header was checked)
// or a read error is an Input error.
void pread_all(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& where) {
  auto* p = static_cast<unsigned char*>(dst);
  while (n > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<uint64_t>(n, 1ull << 30));
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) input_error(where, std::string("cannot read: ") + std::strerror(errno));
    if (got == 0) input_error(where, "the file ended early (was it changed while being read?)");
    p += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

void write_all(int fd, const void* src, std::size_t n, const std::string& where) {
  const auto* p = static_cast<const unsigned char*>(src);
  while (n > 0) {
    const ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) input_error(where, std::string("cannot write: ") + std::strerror(errno));
    p += put;
    n -= static_cast<std::size_t>(put);
  }
}

std::string read_text_file(const std::string& path, uint64_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block
  if (fd < 0) input_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  std::string text;
  try {
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) input_error(path, "not a regular file");
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size > limit)
      input_error(path, "file of " + std::to_string(size) + " bytes exceeds the limit of " +
                            std::to_string(limit));
    text.resize(static_cast<std::size_t>(size));
    pread_all(fd, text.data(), size, 0, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return text;
}

// A shard name from an index: a plain file name inside the folder.
void check_shard_name(const std::string& name, const std::string& where) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
    input_error(where, "weight_map names the file " + safetensors::printable(name) +
                           ", which is not a file name in the model folder");
}

std::string shard_name(std::size_t k, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

}  // namespace

// ---- SafetensorsFile --------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block
  if (fd_ < 0) input_error(path_, std::string("cannot open: ") + std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) input_error(path_, "not a regular file");
    const auto size = static_cast<uint64_t>(st.st_size);
    unsigned char first8[8] = {};
    if (size >= 8) pread_all(fd_, first8, 8, 0, path_);
    const uint64_t n = safetensors::header_length(first8, size, path_);
    std::string text(static_cast<std::size_t>(n), '\0');
    pread_all(fd_, text.data(), n, 8, path_);
    header_ = safetensors::parse_header(text, size, path_);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<unsigned char> SafetensorsFile::read_bytes(const TensorEntry& t) const {
  std::vector<unsigned char> out(static_cast<std::size_t>(t.bytes()));
  pread_all(fd_, out.data(), t.bytes(), header_.data_start + t.begin, path_);
  return out;
}

core::Tensor SafetensorsFile::read_f32(const TensorEntry& t) const {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    input_error(path_, "tensor " + safetensors::printable(t.name) + " is " + safetensors::dtype_name(t.dtype) +
                           "; opd reads F32, F16 and BF16 weights");
  core::Tensor out = core::Tensor::empty(t.shape, core::DType::F32);
  float* dst = out.data<float>();
  const auto n = static_cast<std::size_t>(out.numel());
  if (t.dtype == DType::F32) {
    pread_all(fd_, dst, t.bytes(), header_.data_start + t.begin, path_);
    return out;
  }
  // 16-bit: read the raw values into the second half of the f32 buffer and widen in place from
  // the front: writing element i (bytes [4i, 4i+4)) never reaches the source of any element
  // after it (bytes from 2n + 2(i+1) on), so no second buffer is needed.
  auto* half = reinterpret_cast<uint16_t*>(dst) + n;
  pread_all(fd_, half, t.bytes(), header_.data_start + t.begin, path_);
  const bool f16 = t.dtype == DType::F16;
  for (std::size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, half + i, sizeof h);
    dst[i] = f16 ? safetensors::f16_to_f32(h) : safetensors::bf16_to_f32(h);
  }
  return out;
}

// ---- SafetensorsFolder ------------------------------------------------------------------------

SafetensorsFolder::SafetensorsFolder(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec))
    input_error(dir_, "not a directory", "give the Hugging Face model folder (config.json, *.safetensors)");
  const std::string single = (fs::path(dir_) / kSafetensorsSingle).string();
  const std::string index = (fs::path(dir_) / kSafetensorsIndex).string();
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(single, ec)) {
    shard_files.push_back(kSafetensorsSingle);
  } else if (fs::exists(index, ec)) {
    index_ = true;
    const json j = safetensors::parse_json_limited(read_text_file(index, kMaxIndexBytes), index, kMaxIndexDepth);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      input_error(index, "needs an object \"weight_map\" mapping tensor names to files");
    std::set<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) input_error(index, "weight_map[" + safetensors::printable(name) + "] must be a file name");
      check_shard_name(file.get<std::string>(), index);
      weight_map[name] = file.get<std::string>();
      files.insert(file.get<std::string>());
    }
    if (files.empty()) input_error(index, "weight_map is empty");
    shard_files.assign(files.begin(), files.end());
  } else {
    std::string found;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string ext = e.path().extension().string();
      if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".safetensors")
        found += (found.empty() ? "" : ", ") + e.path().filename().string();
    }
    input_error(dir_, std::string("has neither ") + kSafetensorsSingle + " nor " + kSafetensorsIndex +
                          (found.empty() ? "" : " (found: " + found + ")"),
                "opd reads Hugging Face safetensors folders; save the model with "
                "save_pretrained(..., safe_serialization=True)");
  }
  for (const auto& f : shard_files) {
    files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir_) / f).string()));
    const std::size_t k = files_.size() - 1;
    for (const TensorEntry& t : files_[k]->header().tensors) {
      auto [it, fresh] = where_.emplace(t.name, std::make_pair(k, &t));
      if (!fresh)
        input_error(dir_, "tensor " + safetensors::printable(t.name) + " is stored twice (in " +
                              files_[it->second.first]->path() + " and " + files_[k]->path() + ")");
    }
  }
  for (const auto& [name, file] : weight_map) {
    auto it = where_.find(name);
    if (it == where_.end() || fs::path(files_[it->second.first]->path()).filename() != file)
      input_error(index, "weight_map puts " + safetensors::printable(name) + " in " + safetensors::printable(file) +
                             ", which does not hold it");
  }
}

SafetensorsFolder::~SafetensorsFolder() = default;

std::vector<std::string> SafetensorsFolder::names() const {
  std::vector<std::string> out;
  for (const auto& [name, w] : where_) out.push_back(name);
  return out;
}

const TensorEntry& SafetensorsFolder::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) input_error(dir_, "the model folder has no tensor " + safetensors::printable(name));
  return *it->second.second;
}

const SafetensorsFile& SafetensorsFolder::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) input_error(dir_, "the model folder has no tensor " + safetensors::printable(name));
  return *files_[it->second.first];
}

// ---- writing ----------------------------------------------------------------------------------

uint64_t SafetensorsTensor::bytes() const {
  uint64_t n = safetensors::dtype_size(dtype);
  for (int64_t d : shape) {
    OPD_CHECK(d >= 0, "tensor '", name, "' has a negative dimension");
    OPD_CHECK(!__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n), "tensor '", name,
              "' is too large");
  }
  return n;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const TensorBytes& bytes_of,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    OPD_CHECK(t.name != "__metadata__" && !t.name.empty() && !header.contains(t.name),
              "bad or repeated tensor name '", t.name, "'");
    const uint64_t b = t.bytes();
    header[t.name] = {{"dtype", safetensors::dtype_name(t.dtype)},
                      {"shape", json(t.shape)},
                      {"data_offsets", json::array({offset, offset + b})}};
    offset += b;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section 8-byte aligned
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(text.size() >> (8 * i));

  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) input_error(path, std::string("cannot create: ") + std::strerror(errno));
  try {
    write_all(fd, len, 8, path);
    write_all(fd, text.data(), text.size(), path);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const std::vector<unsigned char> data = bytes_of(i);
      OPD_CHECK(data.size() == tensors[i].bytes(), "tensor '", tensors[i].name, "': ",
                data.size(), " bytes given for ", tensors[i].bytes());
      write_all(fd, data.data(), data.size(), path);
    }
    if (::fsync(fd) != 0) input_error(path, std::string("cannot sync: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) input_error(path, std::string("cannot close: ") + std::strerror(errno));
}

std::vector<std::string> write_safetensors_folder(const std::string& dir,
                                                  const std::vector<SafetensorsTensor>& tensors,
                                                  const TensorBytes& bytes_of,
                                                  uint64_t max_shard_bytes) {
  OPD_CHECK(max_shard_bytes > 0, "max_shard_bytes must be positive");
  // Greedy shards in order: a new one starts when the next tensor would overflow this one.
  std::vector<std::vector<std::size_t>> shards;
  uint64_t in_shard = 0, total = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t b = tensors[i].bytes();
    if (shards.empty() || (in_shard > 0 && in_shard + b > max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += b;
    total += b;
  }
  if (shards.size() <= 1) {
    write_safetensors((fs::path(dir) / kSafetensorsSingle).string(), tensors, bytes_of);
    return {kSafetensorsSingle};
  }
  std::vector<std::string> files;
  json weight_map = json::object();
  for (std::size_t k = 0; k < shards.size(); ++k) {
    const std::string name = shard_name(k + 1, shards.size());
    std::vector<SafetensorsTensor> part;
    for (std::size_t i : shards[k]) {
      part.push_back(tensors[i]);
      weight_map[tensors[i].name] = name;
    }
    write_safetensors((fs::path(dir) / name).string(), part,
                      [&](std::size_t j) { return bytes_of(shards[k][j]); });
    files.push_back(name);
  }
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string path = (fs::path(dir) / kSafetensorsIndex).string();
  const std::string text = index.dump(2) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) input_error(path, std::string("cannot create: ") + std::strerror(errno));
  try {
    write_all(fd, text.data(), text.size(), path);
    if (::fsync(fd) != 0) input_error(path, std::string("cannot sync: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) input_error(path, std::string("cannot close: ") + std::strerror(errno));
  files.push_back(kSafetensorsIndex);
  return files;
}

uint64_t parse_byte_size(const std::string& text, const std::string& where) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::pair<const char*, uint64_t> units[] = {
      {"", 1},         {"B", 1},           {"KB", 1000},        {"MB", 1000000},
      {"GB", 1000000000}, {"KIB", 1ull << 10}, {"MIB", 1ull << 20}, {"GIB", 1ull << 30}};
  uint64_t n = 0;
  bool ok = digits > 0 && digits <= 18;
  if (ok) n = std::stoull(text.substr(0, digits));
  uint64_t mult = 0;
  for (const auto& [u, m] : units)
    if (unit == u) mult = m;
  uint64_t out = 0;
  if (!ok || mult == 0 || __builtin_mul_overflow(n, mult, &out) || out == 0)
    input_error(where, "'" + text + "' is not a positive size",
                "write bytes, or a number with KB, MB, GB (10^3k) or KiB, MiB, GiB (2^10k)");
  return out;
}

}  // namespace opd::io
