#include "core/tensor.hpp"

#include <cstring>
#include <new>
#include <sstream>

#include "core/device_access.hpp"
#include "core/error.hpp"

namespace opd::core {

namespace {
DeviceAllocator g_cuda_allocator;
constexpr std::size_t kHostAlign = 64;
}  // namespace

std::size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::Host ? "host" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    OPD_CHECK(d >= 0, "negative dimension in ", shape_str(s));
    n *= d;
  }
  return n;
}

void register_device_allocator(Device device, DeviceAllocator allocator) {
  OPD_CHECK(device == Device::Cuda, "only the Cuda device takes an allocator");
  g_cuda_allocator = allocator;
}

Storage::Storage(std::size_t bytes, Device device)
    : bytes_(bytes),
      device_(device),
      op_scratch_(kDeviceEmulation && device_access_open()),
      serial_(kDeviceEmulation ? next_storage_serial() : 0) {
  std::size_t n = bytes == 0 ? kHostAlign : bytes;
  if (device == Device::Host) {
    n = (n + kHostAlign - 1) / kHostAlign * kHostAlign;
    data_ = ::operator new(n, std::align_val_t(kHostAlign));
  } else {
    if (!g_cuda_allocator.alloc)
      throw Error(ErrorKind::Input, "a CUDA tensor was requested but no CUDA backend is active",
                  "tensor", "build with OPD_CUDA=ON and run on a machine with a GPU");
    data_ = g_cuda_allocator.alloc(n);
  }
}

Storage::~Storage() {
  if (!data_) return;
  if (device_ == Device::Host)
    ::operator delete(data_, std::align_val_t(kHostAlign));
  else if (g_cuda_allocator.free)
    g_cuda_allocator.free(data_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(t.numel_) * dtype_size(dtype),
                                         device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  OPD_CHECK(device == Device::Host, "Tensor::zeros on device: use backend::fill");
  std::memset(t.raw(), 0, t.bytes());
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  Tensor t = empty(shape, DType::F32);
  OPD_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_vector: ", values.size(),
            " values for shape ", shape_str(shape));
  std::memcpy(t.raw(), values.data(), t.bytes());
  return t;
}

Tensor Tensor::from_vector(const std::vector<int32_t>& values, const Shape& shape) {
  Tensor t = empty(shape, DType::I32);
  OPD_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_vector: ", values.size(),
            " values for shape ", shape_str(shape));
  std::memcpy(t.raw(), values.data(), t.bytes());
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  if (i < 0) i += n;
  OPD_CHECK(i >= 0 && i < n, "dim ", i, " out of range for ", describe());
  return shape_[static_cast<std::size_t>(i)];
}

void* Tensor::raw() const {
  OPD_CHECK(storage_, "use of an undefined tensor");
  void* p = static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
  if constexpr (kDeviceEmulation) {
    if (device_ == Device::Cuda ? !device_access_open()
                                : device_access_strict() && !storage_->op_scratch())
      device_access_violation(describe(), device_ == Device::Host);
    if (device_ == Device::Cuda) trace_device_access(storage_->serial(), p);
  }
  return p;
}

uintptr_t Tensor::address() const {
  OPD_CHECK(storage_, "use of an undefined tensor");
  return reinterpret_cast<uintptr_t>(storage_->data()) +
         static_cast<uintptr_t>(offset_) * dtype_size(dtype_);
}

void Tensor::check_dtype(DType want) const {
  OPD_CHECK(dtype_ == want, "tensor ", describe(), " accessed as ", dtype_name(want));
}

Tensor Tensor::view(const Shape& shape) const {
  OPD_CHECK(shape_numel(shape) == numel_, "cannot view ", describe(), " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  OPD_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], "bad slice [", begin,
            ", ", end, ") of ", describe());
  Tensor t = *this;
  int64_t row = shape_[0] == 0 ? 0 : numel_ / shape_[0];
  t.offset_ += begin * row;
  t.shape_[0] = end - begin;
  t.numel_ = (end - begin) * row;
  return t;
}

Tensor Tensor::clone() const {
  OPD_CHECK(is_host(), "Tensor::clone on device: use backend::copy");
  Tensor t = empty(shape_, dtype_, device_);
  if (numel_ > 0) std::memcpy(t.raw(), raw(), bytes());
  return t;
}

std::vector<float> Tensor::to_vector() const {
  OPD_CHECK(is_host(), "to_vector needs a host tensor");
  const float* p = data<float>();
  return std::vector<float>(p, p + numel_);
}

std::vector<int32_t> Tensor::to_vector_i32() const {
  OPD_CHECK(is_host(), "to_vector_i32 needs a host tensor");
  const int32_t* p = data<int32_t>();
  return std::vector<int32_t>(p, p + numel_);
}

std::string Tensor::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype_) << shape_str(shape_) << " " << device_name(device_);
  return os.str();
}

}  // namespace opd::core
