// CUDA device runtime for opd: device discovery and the device allocator that core::Tensor uses.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cuda {

namespace {

// Small blocks in 512-byte steps, large ones in 2 MiB steps, so that nearby sizes share blocks.
std::size_t rounded_size(std::size_t bytes) {
  const std::size_t step = bytes < (std::size_t{1} << 20) ? 512 : (std::size_t{2} << 20);
  return std::max<std::size_t>(step, (bytes + step - 1) / step * step);
}

// Device memory for tensors, cached. cudaMalloc and cudaFree are slow and synchronise the whole
// device, and opd allocates short-lived device tensors all the time (per-block scratch, staged
// row arrays, decode-step logits). Freed blocks are kept by their rounded size and handed out
// again. Every kernel runs on stream() and host copies on the legacy stream, which waits for it,
// so a block reused by a later allocation is only touched after the work that used it before
// (stream order); the NCCL stream synchronises before its calls return. When cudaMalloc fails the cache is released and the allocation tried
// once more. OPD_CUDA_CACHE=0 turns the cache off (plain cudaMalloc / cudaFree).
class BlockCache {
 public:
  void* allocate(std::size_t bytes) {
    const std::size_t n = rounded_size(bytes);
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

void* plain_alloc(std::size_t bytes) {
  if (caching()) return cache().allocate(bytes);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess)
    throw Error(ErrorKind::Input, std::string("cudaMalloc failed: ") + cudaGetErrorString(err),
                "cuda", "reduce the batch or model size");
  return p;
}
void plain_free(void* p) {
  if (caching()) cache().release(p);
  else cudaFree(p);
}

}  // namespace

// The blocks of every live GraphPool, by address: a freed block goes back to its pool.
struct PoolBlocks {
  std::mutex mutex;
  std::unordered_map<void*, std::pair<GraphPool*, std::size_t>> owner;  // pool, rounded size
  static PoolBlocks& get() {
    static PoolBlocks* p = new PoolBlocks;  // never destroyed, like the cache
    return *p;
  }
  static thread_local GraphPool* active;

  void* allocate(GraphPool& pool, std::size_t bytes) {
    const std::size_t n = rounded_size(bytes);
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = pool.free_.find(n); it != pool.free_.end()) {
      void* p = it->second;
      pool.free_.erase(it);
      return p;
    }
    void* p = plain_alloc(n);
    owner.emplace(p, std::make_pair(&pool, n));
    pool.blocks_.push_back(p);
    return p;
  }
  // Whether p belonged to a pool (and is now back in it).
  bool release(void* p) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = owner.find(p);
    if (it == owner.end()) return false;
    it->second.first->free_.emplace(it->second.second, p);
    return true;
  }
  // A destroyed pool's free blocks go back to the allocator; blocks a tensor still holds become
  // ordinary blocks, freed the ordinary way.
  void dissolve(GraphPool& pool) {
    std::vector<void*> idle;
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (void* p : pool.blocks_) owner.erase(p);
      for (const auto& [n, p] : pool.free_) idle.push_back(p);
      pool.free_.clear();
      pool.blocks_.clear();
    }
    for (void* p : idle) plain_free(p);
  }
};
thread_local GraphPool* PoolBlocks::active = nullptr;

void GraphPool::activate() { PoolBlocks::active = this; }
void GraphPool::deactivate() {
  if (PoolBlocks::active == this) PoolBlocks::active = nullptr;
}
GraphPool::~GraphPool() {
  deactivate();
  cudaDeviceSynchronize();  // a replay may still be using the blocks
  PoolBlocks::get().dissolve(*this);
}

namespace {

void* device_alloc(std::size_t bytes) {
  if (GraphPool* pool = PoolBlocks::active) return PoolBlocks::get().allocate(*pool, bytes);
  return plain_alloc(bytes);
}
void device_free(void* p) {
  if (!PoolBlocks::get().release(p)) plain_free(p);
}

}  // namespace

cudaStream_t stream() {
  static const cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    check(cudaStreamCreateWithFlags(&created, cudaStreamDefault), "cudaStreamCreate (ops)");
    return created;
  }();
  return s;
}

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
