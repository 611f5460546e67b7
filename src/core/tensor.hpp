// Tensor: a contiguous, row-major, reference-counted n-d array with a dtype and a device tag.
// Views (reshape, row slices) share storage; clone() copies. Host memory is 64-byte aligned.
// Device (Cuda) storage is allocated through a hook that backend/ registers, so core/ never
// depends on CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device_access.hpp"

namespace opd::core {

enum class DType : uint8_t { F32, BF16, I32, I64 };
enum class Device : uint8_t { Host, Cuda };

std::size_t dtype_size(DType dt);
const char* dtype_name(DType dt);
const char* device_name(Device d);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::BF16; }  // raw bf16 bits

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// Raw memory block. Host: aligned new/delete. Cuda: the registered allocator.
class Storage {
 public:
  Storage(std::size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // Device emulation: host memory an op made for itself (a strict op may use it), and the
  // allocation's number in the order of allocations (a replay trace keeps the older ones).
  bool op_scratch() const { return op_scratch_; }
  uint64_t serial() const { return serial_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Device device_;
  bool op_scratch_ = false;
  uint64_t serial_ = 0;
};

struct DeviceAllocator {
  void* (*alloc)(std::size_t bytes) = nullptr;
  void (*free)(void* p) = nullptr;
};
void register_device_allocator(Device device, DeviceAllocator allocator);

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::Host);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::Host);
  // Host tensor holding a copy of `values` with the given shape.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  // (In a device-emulation build, device memory counts as host memory inside an op: the CPU
  // kernels run on it. See core/device_access.hpp.)
  bool is_host() const {
    return device_ == Device::Host || (kDeviceEmulation && device_access_open());
  }

  void* raw() const;
  // Where the elements start, for identity only (aliasing checks, keys): never dereference it
  // (raw() is the access, and device emulation checks that one).
  uintptr_t address() const;
  template <class T> T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(raw());
  }

  // Same elements, new shape (numel must match). Shares storage.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dim 0. Shares storage.
  Tensor slice(int64_t begin, int64_t end) const;
  // Deep copy on the same device.
  Tensor clone() const;
  // Host tensors only: copy into / out of a std::vector.
  std::vector<float> to_vector() const;
  std::vector<int32_t> to_vector_i32() const;

  std::string describe() const;  // "f32[2, 3] host"

 private:
  void check_dtype(DType want) const;

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::F32;
  Device device_ = Device::Host;
};

}  // namespace opd::core
