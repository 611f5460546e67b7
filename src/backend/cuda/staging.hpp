// Where the CUDA distillation ops' inputs, scratch and results live while a kernel runs. The
// preparation code (the *_row.hpp files: checks, then a parameter block of raw pointers) is
// written against this interface: on a GPU (cuda_block.cuh's DeviceStaging) small host inputs
// are uploaded and scratch is device memory; the host emulation test implements it with plain
// host memory. Everything staged lives until the Staging object is destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cuda {

class Staging {
 public:
  explicit Staging(core::Device device) : device_(device) {}
  virtual ~Staging() = default;
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  // Where the kernels run: outputs and the large inputs must already live there.
  core::Device device() const { return device_; }

  // A pointer the kernel can read t's elements through: t's own if t lives on device(), else
  // a copy (per-row id lists and scalars from the host; O(rows x k), never [rows, V]).
  template <class T>
  const T* in(const core::Tensor& t) {
    OPD_CHECK(t.dtype() == core::dtype_of<T>(), "staging: ", t.describe());
    if (t.device() == device_) return t.data<T>();
    return static_cast<const T*>(upload(t.raw(), t.bytes()));
  }
  template <class T>
  const T* in(const std::vector<T>& v) {
    return static_cast<const T*>(upload(v.data(), v.size() * sizeof(T)));
  }
  // Uninitialised scratch for n values of T where the kernels run.
  template <class T>
  T* scratch(int64_t n) {
    return static_cast<T*>(allocate(static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(T)));
  }
  // t's elements on the host (for the checks that read ids).
  template <class T>
  std::vector<T> host(const core::Tensor& t) {
    OPD_CHECK(t.dtype() == core::dtype_of<T>(), "staging: ", t.describe());
    std::vector<T> v(static_cast<std::size_t>(t.numel()));
    if (t.numel() == 0) return v;
    if (t.is_host()) {
      const T* p = t.data<T>();
      v.assign(p, p + t.numel());
    } else {
      download(v.data(), t.raw(), t.bytes());
    }
    return v;
  }
  // Results the kernels wrote into scratch, copied to host vectors (waits for the kernels).
  template <class T>
  void fetch(std::vector<T>& dst, const T* src) {
    if (!dst.empty()) download(dst.data(), src, dst.size() * sizeof(T));
  }

 protected:
  virtual const void* upload(const void* host, std::size_t bytes) = 0;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void download(void* host, const void* src, std::size_t bytes) = 0;

 private:
  core::Device device_;
};

}  // namespace opd::backend::cuda
