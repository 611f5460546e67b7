// CUDA device runtime for opd: device discovery and the device allocator that core::Tensor uses.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backend/cuda/device.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cuda {

namespace {

// Device memory for tensors, cached. cudaMalloc and cudaFree are slow and synchronise the whole
// device, and opd allocates short-lived device tensors all the time (per-block scratch, staged
// row arrays, decode-step logits). Freed blocks are kept by their rounded size and handed out
// again. Every kernel runs on the default stream, so a block reused by a later allocation is
// only touched after the work that used it before (stream order); the NCCL stream synchronises
// before its calls return. When cudaMalloc fails the cache is released and the allocation tried
// once more. OPD_CUDA_CACHE=0 turns the cache off (plain cudaMalloc / cudaFree).
class BlockCache {
 public:
  void* allocate(std::size_t bytes) {
    const std::size_t n = rounded(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = free_.find(n); it != free_.end()) {
      void* p = it->second;
      free_.erase(it);
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, n);
    if (err == cudaErrorMemoryAllocation && !free_.empty()) {
      cudaGetLastError();  // clear the error before trying again
      release_locked();
      err = cudaMalloc(&p, n);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw Error(ErrorKind::Input,
                  std::string("cudaMalloc of ") + std::to_string(bytes >> 20) + " MiB failed: " +
                      cudaGetErrorString(err),
                  "cuda", "reduce the batch, sequence or model size");
    }
    size_.emplace(p, n);
    return p;
  }
  void release(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = size_.find(p);
    if (it == size_.end()) return;  // not ours: nothing to do
    free_.emplace(it->second, p);
  }

 private:
  // Small blocks in 512-byte steps, large ones in 2 MiB steps, so that nearby sizes share blocks.
  static std::size_t rounded(std::size_t bytes) {
    const std::size_t step = bytes < (std::size_t{1} << 20) ? 512 : (std::size_t{2} << 20);
    return std::max<std::size_t>(step, (bytes + step - 1) / step * step);
  }
  void release_locked() {
    cudaDeviceSynchronize();
    for (const auto& [n, p] : free_) {
      cudaFree(p);
      size_.erase(p);
    }
    free_.clear();
  }
  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;       // rounded size -> cached block
  std::unordered_map<void*, std::size_t> size_;  // every block this cache made
};

bool caching() {
  static const bool on = [] {
    const char* v = std::getenv("OPD_CUDA_CACHE");
    return !(v && std::string(v) == "0");
  }();
  return on;
}
// Never destroyed: blocks outlive static destruction order (the CUDA context goes first).
BlockCache& cache() {
  static BlockCache* c = new BlockCache;
  return *c;
}

void* device_alloc(std::size_t bytes) {
  if (caching()) return cache().allocate(bytes);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess)
    throw Error(ErrorKind::Input, std::string("cudaMalloc failed: ") + cudaGetErrorString(err),
                "cuda", "reduce the batch or model size");
  return p;
}
void device_free(void* p) {
  if (caching()) cache().release(p);
  else cudaFree(p);
}
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
