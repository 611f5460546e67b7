// The device side of the per-row distillation kernels (row_block.hpp): CudaBlock, the block
// policy the row code runs on (one CUDA block of kBlockThreads per row), the kernel that runs a
// row functor per block, and DeviceStaging, which uploads small host inputs and allocates scratch
// in device memory for the duration of one op.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device.hpp"
#include "backend/cuda/row_block.hpp"
#include "backend/cuda/staging.hpp"

namespace opd::backend::cuda {

constexpr int kBlockThreads = 256;  // a multiple of the warp size (the reductions assume it)
constexpr unsigned kFullMask = 0xFFFFFFFFu;

// Reductions: a butterfly within each warp (every lane ends with the same bits, addition being
// commutative), the warps' partials in shared memory, then every thread adds those in warp
// order. Deterministic from run to run; each ends with a barrier so its buffers can be reused.
struct CudaBlock {
  unsigned char* slot;  // rows::kSharedBytes of block-shared memory

  __device__ int tid() const { return static_cast<int>(threadIdx.x); }
  __device__ int size() const { return static_cast<int>(blockDim.x); }
  __device__ void sync() const { __syncthreads(); }

  template <class T>
  __device__ T* shared() {
    static_assert(sizeof(T) <= rows::kSharedBytes, "block-shared slot too small");
    return reinterpret_cast<T*>(slot);
  }

  __device__ double sum(double v) {
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) t += part[w];
    __syncthreads();
    return t;
  }

  // NaN-ignoring: a < b ? b : a never takes a NaN b, and the inputs start from -inf.
  __device__ double max(double v) {
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v = rows::dmax(v, __shfl_xor_sync(kFullMask, v, o));
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    double t = -rows::kInf;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) t = rows::dmax(t, part[w]);
    __syncthreads();
    return t;
  }

  __device__ uint64_t max_u64(uint64_t v) {
    __shared__ unsigned long long part[32];
    unsigned long long x = v;
    for (int o = 16; o > 0; o >>= 1) {
      const unsigned long long y = __shfl_xor_sync(kFullMask, x, o);
      x = y > x ? y : x;
    }
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = x;
    __syncthreads();
    unsigned long long t = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) t = part[w] > t ? part[w] : t;
    __syncthreads();
    return static_cast<uint64_t>(t);
  }

  __device__ void sum16(double* m, int* c) {
    __shared__ double pm[32][16];
    __shared__ int pc[32][16];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    OPD_UNROLL
    for (int d = 0; d < 16; ++d) {
      double mv = m[d];
      int cv = c[d];
      for (int o = 16; o > 0; o >>= 1) {
        mv += __shfl_xor_sync(kFullMask, mv, o);
        cv += __shfl_xor_sync(kFullMask, cv, o);
      }
      if (lane == 0) {
        pm[warp][d] = mv;
        pc[warp][d] = cv;
      }
    }
    __syncthreads();
    OPD_UNROLL
    for (int d = 0; d < 16; ++d) {
      double t = 0.0;
      int ct = 0;
      for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) {
        t += pm[w][d];
        ct += pc[w][d];
      }
      m[d] = t;
      c[d] = ct;
    }
    __syncthreads();
  }

  __device__ int scan(int v, int& total) {
    __shared__ int s[1024];
    s[threadIdx.x] = v;
    __syncthreads();
    int before = 0, all = 0;
    for (int i = 0; i < static_cast<int>(blockDim.x); ++i) {
      if (i < static_cast<int>(threadIdx.x)) before += s[i];
      all += s[i];
    }
    __syncthreads();
    total = all;
    return before;
  }
};

// One block per row r in [0, gridDim.x): Row()(block, params, r).
template <class Row, class Params>
__global__ void __launch_bounds__(kBlockThreads) rows_kernel(const Params P) {
  __shared__ __align__(16) unsigned char slot[rows::kSharedBytes];
  CudaBlock b{slot};
  Row()(b, P, static_cast<int64_t>(blockIdx.x));
}

template <class Row, class Params>
void launch_rows(const char* op, int64_t n, const Params& P) {
  if (n == 0) return;
  OPD_CHECK(n <= std::numeric_limits<int32_t>::max(), op, ": ", n, " rows exceed one launch");
  rows_kernel<Row, Params><<<static_cast<unsigned>(n), kBlockThreads, 0, stream()>>>(P);
  check_launch(op);
}

// Staging in device memory: each upload and scratch area is a device tensor held until the op
// returns (freeing waits for the kernels that use it).
class DeviceStaging final : public Staging {
 public:
  DeviceStaging() : Staging(core::Device::Cuda) {}

 protected:
  const void* upload(const void* host, std::size_t bytes) override {
    void* d = allocate(bytes);
    if (bytes > 0) copy_to_device(d, host, bytes);
    return d;
  }
  void* allocate(std::size_t bytes) override {
    const int64_t words = static_cast<int64_t>((bytes + 7) / 8);
    held_.push_back(core::Tensor::empty({words > 0 ? words : 1}, core::DType::I64, core::Device::Cuda));
    return held_.back().raw();
  }
  void download(void* host, const void* src, std::size_t bytes) override {
    copy_to_host(host, src, bytes);
  }

 private:
  std::vector<core::Tensor> held_;
};

}  // namespace opd::backend::cuda
