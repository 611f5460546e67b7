// io/checkpoint_reader.cpp: CheckpointReader (see checkpoint.hpp).
#include "io/checkpoint.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "io/checkpoint_format.hpp"
#include "io/checksum.hpp"
#include "io/hdf5_file.hpp"

namespace opd::io {

namespace fs = std::filesystem;
using core::DType;
using core::Tensor;
using namespace format;

struct CheckpointReader::Impl {
  std::string path;
  std::optional<h5::File> file;
  int64_t version = 0;
  std::vector<std::string> names;  // every dataset (walking them validates the metadata)

  [[noreturn]] void fail(const std::string& what, const std::string& hint = {}) const {
    input_error(path, what, hint);
  }

  h5::Dataset open(const std::string& raw_name) const {
    std::string name = normalize_name(raw_name);
    if (file->object_type(name) != H5I_DATASET)
      fail("has no dataset '" + name + "'",
           "was the checkpoint written for another model or by another opd version?");
    return file->open_dataset(name);
  }

  void check_checksum(const h5::Dataset& d, const void* data, std::size_t bytes) const {
    if (!d.has_attribute(kChecksumAttr))
      fail("dataset '" + d.name() + "' has no " + kChecksumAttr + " checksum attribute",
           "the file was not written by opd");
    uint64_t stored = d.read_attribute_u64(kChecksumAttr);
    uint64_t actual = fnv1a64(data, bytes);
    if (stored != actual)
      fail("dataset '" + d.name() + "' fails its checksum (stored " + hex(stored) +
               ", computed " + hex(actual) + "): the file is corrupt",
           "restore it from a copy, or resume from an older checkpoint");
  }

  // Reads a scalar or 1-d dataset of the expected type whole, checksum verified.
  template <class T>
  std::vector<T> read_values(const std::string& name, StoredType want, int rank,
                             hid_t mem_type) const {
    h5::Dataset d = open(name);
    StoredType got = classify(d);
    Shape shape = d.shape();
    if (got != want || static_cast<int>(shape.size()) != rank)
      fail("dataset '" + d.name() + "' is " + stored_type_name(got) + core::shape_str(shape) +
           ", expected " + (rank == 0 ? "a scalar " : "a vector of ") + stored_type_name(want));
    std::vector<T> v(static_cast<std::size_t>(core::shape_numel(shape)));
    d.read(mem_type, v.data());
    check_checksum(d, v.data(), v.size() * sizeof(T));
    return v;
  }

  // The dataset's tensor dtype, or an Input error naming what it holds instead.
  DType tensor_dtype(const h5::Dataset& d) const {
    StoredType st = classify(d);
    auto dt = dtype_of_stored(st);
    if (!dt)
      fail("dataset '" + d.name() + "' holds " + stored_type_name(st) + ", not a tensor",
           "tensors are f32, bf16, i32 or i64");
    return *dt;
  }

  void check_block(const h5::Dataset& d, const Shape& shape, const Shape& offset,
                   const Shape& count) const {
    bool ok = offset.size() == shape.size() && count.size() == shape.size();
    for (std::size_t i = 0; ok && i < shape.size(); ++i)
      ok = offset[i] >= 0 && count[i] >= 0 && offset[i] + count[i] <= shape[i];
    if (!ok)
      fail("block at offset " + core::shape_str(offset) + " of shape " + core::shape_str(count) +
               " lies outside dataset '" + d.name() + "' of shape " + core::shape_str(shape),
           "the requested layout does not divide this tensor");
  }
};

CheckpointReader::CheckpointReader(std::string path) : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.path = std::move(path);
  const std::string& p = im.path;
  if (p.size() >= 4 && p.compare(p.size() - 4, 4, ".tmp") == 0)
    input_error(p, "refusing to load an unpublished checkpoint (a .tmp file is still being "
                   "written, or was left by a crash)",
                "load the published file, or the one named in `latest`");
  std::error_code ec;
  if (!fs::exists(p, ec))
    input_error("", "checkpoint " + p + " does not exist",
                "check the path; checkpoints are RUN/<stage>/checkpoints/step_NNNNNNNN.h5");
  const std::string unreadable = p + " is not a readable opd checkpoint (truncated or corrupt?)";
  const std::string fix = "delete it and resume from an older checkpoint";
  if (!fs::is_regular_file(p, ec)) input_error("", unreadable, "it is not a regular file");
  try {
    im.file.emplace(h5::File::open_read_only(p));
    im.names = im.file->dataset_names();
  } catch (const Error& e) {
    input_error("", unreadable, e.message() + "; " + fix);
  }
  h5::Object root = im.file->root();
  std::string format;
  try {
    format = root.read_attribute_string("format");
  } catch (const Error&) {
    input_error("", p + " is not an opd checkpoint (no string root attribute 'format')",
                "was it written by another program?");
  }
  if (format != kCheckpointFormat)
    input_error("", p + " is not an opd checkpoint (root attribute format = '" + format +
                        "', expected '" + kCheckpointFormat + "')",
                "was it written by another program?");
  try {
    im.version = root.read_attribute_int("format_version");
  } catch (const Error&) {
    input_error("", p + " has no integer root attribute 'format_version'", fix);
  }
  if (im.version > kCheckpointFormatVersion)
    input_error("", p + " was written by a newer opd (format_version " +
                        std::to_string(im.version) + "; this build reads up to " +
                        std::to_string(kCheckpointFormatVersion) + ")",
                "upgrade opd to load it");
  if (im.version < 1)
    input_error("", p + " has an invalid format_version " + std::to_string(im.version), fix);
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::path() const { return impl_->path; }
int64_t CheckpointReader::format_version() const { return impl_->version; }

bool CheckpointReader::has(const std::string& name) const {
  return impl_->file->exists(normalize_name(name));
}

DatasetInfo CheckpointReader::info(const std::string& name) const {
  h5::Dataset d = impl_->open(name);
  DatasetInfo out;
  out.name = d.name();
  out.type = classify(d);
  out.shape = d.shape();
  out.is_tensor = d.has_attribute(kDtypeAttr);
  return out;
}

std::vector<DatasetInfo> CheckpointReader::list() const {
  std::vector<std::string> names = impl_->names;
  std::sort(names.begin(), names.end(), natural_less);
  std::vector<DatasetInfo> out;
  out.reserve(names.size());
  for (const auto& n : names) out.push_back(info(n));
  return out;
}

Tensor CheckpointReader::read_tensor(const std::string& name) const {
  h5::Dataset d = impl_->open(name);
  DType dt = impl_->tensor_dtype(d);
  Tensor t = Tensor::empty(d.shape(), dt);
  d.read(mem_type_of(dt), t.raw());
  impl_->check_checksum(d, t.raw(), t.bytes());
  return t;
}

Tensor CheckpointReader::read_block(const std::string& name, const Shape& offset,
                                    const Shape& count) const {
  h5::Dataset d = impl_->open(name);
  DType dt = impl_->tensor_dtype(d);
  Shape shape = d.shape();
  impl_->check_block(d, shape, offset, count);
  Tensor t = Tensor::empty(count, dt);
  if (count == shape) {  // the whole dataset: the checksum comes for free
    d.read(mem_type_of(dt), t.raw());
    impl_->check_checksum(d, t.raw(), t.bytes());
  } else {
    d.read(mem_type_of(dt), t.raw(), offset, count);
  }
  return t;
}

void CheckpointReader::read_tensor_into(const std::string& name, Tensor& dst,
                                        const Shape& offset) const {
  h5::Dataset d = impl_->open(name);
  OPD_CHECK(dst.defined() && dst.is_host(), "read_tensor_into '", name,
            "': the destination must be a host tensor");
  DType dt = impl_->tensor_dtype(d);
  Shape shape = d.shape();
  if (dt != dst.dtype() || (offset.empty() && shape != dst.shape()))
    impl_->fail("dataset '" + d.name() + "' is " + core::dtype_name(dt) + core::shape_str(shape) +
                    " but the destination is " + core::dtype_name(dst.dtype()) +
                    core::shape_str(dst.shape()),
                "was the checkpoint written for another model configuration?");
  if (offset.empty() || dst.shape() == shape) {
    if (!offset.empty()) impl_->check_block(d, shape, offset, dst.shape());
    d.read(mem_type_of(dt), dst.raw());
    impl_->check_checksum(d, dst.raw(), dst.bytes());
    return;
  }
  impl_->check_block(d, shape, offset, dst.shape());
  d.read(mem_type_of(dt), dst.raw(), offset, dst.shape());
}

uint64_t CheckpointReader::stored_checksum(const std::string& name) const {
  h5::Dataset d = impl_->open(name);
  if (!d.has_attribute(kChecksumAttr))
    impl_->fail("dataset '" + name + "' has no " + kChecksumAttr + " checksum attribute",
                "the file was not written by opd");
  return d.read_attribute_u64(kChecksumAttr);
}

void CheckpointReader::verify(const std::string& name) const {
  h5::Dataset d = impl_->open(name);
  StoredType st = classify(d);
  if (st == StoredType::String) {
    (void)read_string(name);
    return;
  }
  h5::Handle t = d.type();
  std::size_t bytes = static_cast<std::size_t>(core::shape_numel(d.shape())) * H5Tget_size(t.id());
  std::vector<unsigned char> buf(bytes);
  // Read in the stored type: the checksum is over the stored bytes whatever they hold.
  h5::Handle mem = h5::owned_type(H5Tget_native_type(t.id(), H5T_DIR_ASCEND));
  d.read(mem.id(), buf.data());
  impl_->check_checksum(d, buf.data(), buf.size());
}

std::string CheckpointReader::read_string(const std::string& name) const {
  h5::Dataset d = impl_->open(name);
  h5::Handle t = d.type();
  if (H5Tget_class(t.id()) != H5T_STRING || !d.shape().empty())
    impl_->fail("dataset '" + d.name() + "' is " + stored_type_name(classify(d)) +
                core::shape_str(d.shape()) + ", expected a string");
  std::string text;
  if (H5Tis_variable_str(t.id()) > 0) {
    impl_->fail("dataset '" + d.name() + "' is a variable-length string",
                "opd writes fixed-length strings; the file was not written by opd");
  }
  text.assign(H5Tget_size(t.id()), '\0');
  d.read(t.id(), text.data());
  text.resize(std::strlen(text.c_str()));  // drop the NUL padding (texts hold no NULs)
  impl_->check_checksum(d, text.data(), text.size());
  return text;
}

int64_t CheckpointReader::read_int(const std::string& name) const {
  return impl_->read_values<int64_t>(name, StoredType::I64, 0, H5T_NATIVE_INT64)[0];
}

double CheckpointReader::read_double(const std::string& name) const {
  return impl_->read_values<double>(name, StoredType::F64, 0, H5T_NATIVE_DOUBLE)[0];
}

std::vector<int64_t> CheckpointReader::read_ints(const std::string& name) const {
  return impl_->read_values<int64_t>(name, StoredType::I64, 1, H5T_NATIVE_INT64);
}

std::vector<uint64_t> CheckpointReader::read_u64s(const std::string& name) const {
  return impl_->read_values<uint64_t>(name, StoredType::U64, 1, H5T_NATIVE_UINT64);
}

bool CheckpointReader::has_attribute(const std::string& name) const {
  return impl_->file->root().has_attribute(name);
}

std::string CheckpointReader::attribute_string(const std::string& name) const {
  return impl_->file->root().read_attribute_string(name);
}

int64_t CheckpointReader::attribute_int(const std::string& name) const {
  return impl_->file->root().read_attribute_int(name);
}

std::vector<std::pair<std::string, std::string>> CheckpointReader::attributes() const {
  h5::Object root = impl_->file->root();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& n : root.attribute_names()) {
    std::string value;
    switch (root.attribute_class(n)) {
      case H5T_STRING: value = root.read_attribute_string(n); break;
      case H5T_INTEGER: value = std::to_string(root.read_attribute_int(n)); break;
      case H5T_FLOAT: {
        std::ostringstream os;
        os << root.read_attribute_double(n);
        value = os.str();
        break;
      }
      default: value = "(unsupported attribute type)";
    }
    out.emplace_back(n, value);
  }
  return out;
}

}  // namespace opd::io
