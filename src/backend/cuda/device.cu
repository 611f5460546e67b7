// CUDA device runtime for opd: device discovery and the device allocator that core::Tensor uses.
#include <cuda_runtime.h>

#include <cstddef>

#include "backend/cuda/device.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cuda {

namespace {
void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess)
    throw Error(ErrorKind::Input, std::string("cudaMalloc failed: ") + cudaGetErrorString(err),
                "cuda", "reduce the batch or model size");
  return p;
}
void device_free(void* p) { cudaFree(p); }
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

bool activate(int device) {
  if (device_count() <= device) return false;
  if (cudaSetDevice(device) != cudaSuccess) return false;
  core::register_device_allocator(core::Device::Cuda, {&device_alloc, &device_free});
  return true;
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
    internal_error("cuda", "host-to-device copy failed");
}

void synchronize() {
  if (cudaDeviceSynchronize() != cudaSuccess) internal_error("cuda", "cudaDeviceSynchronize failed");
}

std::string device_name() {
  int d = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&d) != cudaSuccess || cudaGetDeviceProperties(&prop, d) != cudaSuccess) return "";
  return prop.name;
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost) != cudaSuccess)
    internal_error("cuda", "device-to-host copy failed");
}

}  // namespace opd::backend::cuda
