// io/checkpoint_format.cpp: the helpers of checkpoint_format.hpp, and stored_type_name.
#include "io/checkpoint_format.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "core/error.hpp"

namespace opd::io {

namespace fs = std::filesystem;
using core::DType;

namespace format {


// Dataset names are slash paths; a leading slash is allowed and dropped.
std::string normalize_name(const std::string& name) {
  std::size_t i = name.find_first_not_of('/');
  std::string n = i == std::string::npos ? std::string() : name.substr(i);
  OPD_CHECK(!n.empty(), "empty checkpoint dataset name '", name, "'");
  std::size_t pos = 0;
  while (pos <= n.size()) {
    std::size_t slash = n.find('/', pos);
    std::string part = n.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    OPD_CHECK(!part.empty() && part != "." && part != "..", "bad checkpoint dataset name '",
              name, "'");
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  return n;
}

hid_t file_type_of(DType dt) {
  switch (dt) {
    case DType::F32: return H5T_IEEE_F32LE;
    case DType::BF16: return H5T_STD_U16LE;  // raw bf16 bits; `dtype` says how to read them
    case DType::I32: return H5T_STD_I32LE;
    case DType::I64: return H5T_STD_I64LE;
  }
  return H5I_INVALID_HID;
}

hid_t mem_type_of(DType dt) {
  switch (dt) {
    case DType::F32: return H5T_NATIVE_FLOAT;
    case DType::BF16: return H5T_NATIVE_UINT16;
    case DType::I32: return H5T_NATIVE_INT32;
    case DType::I64: return H5T_NATIVE_INT64;
  }
  return H5I_INVALID_HID;
}

std::optional<DType> dtype_of_stored(StoredType t) {
  switch (t) {
    case StoredType::F32: return DType::F32;
    case StoredType::BF16: return DType::BF16;
    case StoredType::I32: return DType::I32;
    case StoredType::I64: return DType::I64;
    default: return std::nullopt;
  }
}

StoredType classify(const h5::Dataset& d) {
  h5::Handle t = d.type();
  std::size_t size = H5Tget_size(t.id());
  switch (H5Tget_class(t.id())) {
    case H5T_FLOAT:
      return size == 4 ? StoredType::F32 : size == 8 ? StoredType::F64 : StoredType::Other;
    case H5T_STRING: return StoredType::String;
    case H5T_INTEGER: {
      bool is_signed = H5Tget_sign(t.id()) == H5T_SGN_2;
      if (is_signed && size == 4) return StoredType::I32;
      if (is_signed && size == 8) return StoredType::I64;
      if (!is_signed && size == 8) return StoredType::U64;
      if (!is_signed && size == 2 && d.has_attribute(kDtypeAttr) &&
          d.read_attribute_string(kDtypeAttr) == "bf16")
        return StoredType::BF16;
      return StoredType::Other;
    }
    default: return StoredType::Other;
  }
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// fsync a file or directory by path: the data (or the rename) must be on disk before `latest`
// points at it, or a crash could publish an empty file.
void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) input_error(path, std::string("cannot open for fsync: ") + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the rename is still atomic there.
  if (rc != 0 && !(directory && (err == EINVAL || err == ENOTSUP)))
    input_error(path, std::string("fsync failed: ") + std::strerror(err), "disk full or failing?");
}

std::string parent_dir(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

// "layers.2" < "layers.10": digit runs compare as numbers, so listings follow layer order.
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t i2 = i, j2 = j;
      while (i2 < a.size() && digit(a[i2])) ++i2;
      while (j2 < b.size() && digit(b[j2])) ++j2;
      std::string_view x(a.data() + i, i2 - i), y(b.data() + j, j2 - j);
      while (x.size() > 1 && x.front() == '0') x.remove_prefix(1);
      while (y.size() > 1 && y.front() == '0') y.remove_prefix(1);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace format

const char* stored_type_name(StoredType t) {
  switch (t) {
    case StoredType::F32: return "f32";
    case StoredType::BF16: return "bf16";
    case StoredType::I32: return "i32";
    case StoredType::I64: return "i64";
    case StoredType::U64: return "u64";
    case StoredType::F64: return "f64";
    case StoredType::String: return "string";
    case StoredType::Other: return "other";
  }
  return "other";
}

}  // namespace opd::io
