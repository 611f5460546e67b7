// A small CPU emulator of the CUDA execution model, enough to run opd's plain device code (the
// flash attention kernels of backend/cuda/attention_*kernel*.cuh) on a machine without a GPU:
// a block's threads are real threads, __syncthreads is a barrier, shuffles go through a per-warp
// exchange, atomics are std::atomic_ref, `__shared__` statics and the dynamic shared memory are
// one per launch and reused block after block (blocks run one at a time, in order).
//
// Checks it adds: the dynamic shared memory starts each block filled with NaN (a read of a value
// no thread wrote shows up in the results) and is followed by a guard that must stay untouched.
// Limits: shuffles must be reached by all threads of the block (true of the kernels it runs:
// their row reductions are block-uniform); races are found only by chance.
//
// Include it before any kernel header, in a test translation unit only.
#pragma once

#include <math.h>

#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // #pragma unroll
#pragma GCC diagnostic ignored "-Wsign-compare"     // threadIdx.x is unsigned, as in CUDA

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define OPD_DYNAMIC_SMEM(name) float4* name = ::simt::dynamic_shared()
#define OPD_TC_SMEM(name) float4* name = ::simt::dynamic_shared()
#define OPD_ATTN_KERNEL_NS simt_emulated

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

namespace simt {

constexpr int kWarp = 32;

struct Block {
  int threads = 0;
  dim3 grid, block;
  std::unique_ptr<std::barrier<>> bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
  std::vector<float> shfl[2];
  std::atomic<int> or_slot[3];
  std::vector<float4> smem;  // dynamic shared memory, then the guard
  std::size_t smem_words = 0;
  std::atomic<bool> bad_matrix_access{false};  // simt_wmma.hpp's checks
};

struct Thread {
  uint3 thread, block;
  Block* blk = nullptr;
  unsigned shfl_calls = 0, or_calls = 0;
};
inline thread_local Thread tls;

inline float4* dynamic_shared() { return tls.blk->smem.data(); }
inline void syncthreads() { tls.blk->bar->arrive_and_wait(); }

// Three slots: call k writes slot k % 3; after its barrier thread 0 clears slot (k + 2) % 3, which
// every thread finished reading (call k - 1) and none writes before call k + 2.
inline int syncthreads_or(int pred) {
  Block& b = *tls.blk;
  const unsigned k = tls.or_calls++;
  if (pred) b.or_slot[k % 3].store(1);
  syncthreads();
  const int r = b.or_slot[k % 3].load();
  if (tls.thread.x == 0) b.or_slot[(k + 2) % 3].store(0);
  return r;
}

// Two buffers: call k writes buffer k % 2; the warp barrier of call k + 1 orders every read of
// call k before the writes of call k + 2.
inline float shfl_xor(float v, int off, int width) {
  Block& b = *tls.blk;
  const int tid = static_cast<int>(tls.thread.x), warp = tid / kWarp, lane = tid % kWarp;
  const unsigned par = tls.shfl_calls++ & 1u;
  b.shfl[par][tid] = v;
  b.warp_bar[warp]->arrive_and_wait();
  int src = lane ^ off;
  if (src / width != lane / width) src = lane;
  return b.shfl[par][warp * kWarp + src];
}

inline int atomic_max(int* p, int v) {
  std::atomic_ref<int> a(*p);
  int old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

inline const dim3& grid_dim() { return tls.blk->grid; }
inline const dim3& block_dim() { return tls.blk->block; }

constexpr float kGuard = 1234.5f;

// Runs body() as every thread of every block of `grid` (threads = block.x), blocks in order.
// Throws if a block wrote past its dynamic shared memory.
template <class Body>
void launch(dim3 grid, int threads, std::size_t smem_bytes, const Body& body) {
  Block b;
  b.threads = threads;
  b.grid = grid;
  b.block = dim3{static_cast<unsigned>(threads), 1, 1};
  b.bar = std::make_unique<std::barrier<>>(threads);
  for (int w = 0; w < (threads + kWarp - 1) / kWarp; ++w)
    b.warp_bar.push_back(std::make_unique<std::barrier<>>(std::min(kWarp, threads - w * kWarp)));
  b.shfl[0].assign(threads, 0.0f);
  b.shfl[1].assign(threads, 0.0f);
  for (auto& s : b.or_slot) s.store(0);
  b.smem_words = (smem_bytes + sizeof(float4) - 1) / sizeof(float4);
  constexpr std::size_t kGuardWords = 64;
  b.smem.resize(b.smem_words + kGuardWords);
  std::atomic<bool> overrun{false};
  auto reset_smem = [&] {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (std::size_t i = 0; i < b.smem_words; ++i) b.smem[i] = float4{nan, nan, nan, nan};
    for (std::size_t i = b.smem_words; i < b.smem.size(); ++i)
      b.smem[i] = float4{kGuard, kGuard, kGuard, kGuard};
  };
  auto guard_intact = [&] {
    for (std::size_t i = b.smem_words; i < b.smem.size(); ++i) {
      const float4& g = b.smem[i];
      if (g.x != kGuard || g.y != kGuard || g.z != kGuard || g.w != kGuard) return false;
    }
    return true;
  };
  reset_smem();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      tls.blk = &b;
      tls.thread = uint3{static_cast<unsigned>(t), 0, 0};
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            tls.block = uint3{x, y, z};
            tls.shfl_calls = tls.or_calls = 0;
            body();
            b.bar->arrive_and_wait();  // the block is done
            if (t == 0) {
              if (!guard_intact()) overrun = true;
              reset_smem();
              for (auto& s : b.or_slot) s.store(0);
            }
            b.bar->arrive_and_wait();  // the next block starts on fresh shared memory
          }
    });
  for (auto& th : pool) th.join();
  if (overrun) throw std::runtime_error("simt: a block wrote past its dynamic shared memory");
  if (b.bad_matrix_access)
    throw std::runtime_error("simt: a wmma load or store broke CUDA's alignment rules");
}

}  // namespace simt

#define threadIdx (::simt::tls.thread)
#define blockIdx (::simt::tls.block)
#define blockDim (::simt::block_dim())
#define gridDim (::simt::grid_dim())
#define __syncthreads() ::simt::syncthreads()
#define __syncthreads_or(pred) ::simt::syncthreads_or(pred)
#define __shfl_xor_sync(mask, v, off, width) ::simt::shfl_xor((v), (off), (width))
#define atomicMax(p, v) ::simt::atomic_max((p), (v))
