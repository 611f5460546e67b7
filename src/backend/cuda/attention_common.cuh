// What the attention kernels of backend/cuda share: the element type in memory, tile configs
// per head-dimension bound, shared-memory tile loads, the 16 x 16 thread micro-tile products,
// half-warp row reductions, argument checks and a grow-only device workspace.
//
// Thread layout of every flash kernel: 256 threads as 16 x 16, tx = threadIdx.x % 16 (columns),
// ty = threadIdx.x / 16 (rows). A thread owns rows ty + 16 a and columns tx + 16 c of a tile, so
// the 16 threads of a row are one half-warp (row reductions are shuffles).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/attention_tiles.hpp"
#include "backend/cuda/cuda_check.hpp"

namespace opd::backend::cuda::attn {

using core::Tensor;

// q, k, v and d_out in memory: fp32 today. A bf16 path changes Elem, load() and the dtype check
// in check_shapes(); the kernels compute in fp32 from load()'s result either way.
using Elem = float;
constexpr core::DType kElemType = core::DType::F32;
__device__ __forceinline__ float load(const Elem* p) { return *p; }

constexpr int kThreads = 256;

// f(std::integral_constant<int, kE>) for kE = head_dim_bound(E).
template <class F>
void with_head_dim(int E, F&& f) {
  switch (head_dim_bound(E)) {
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    case 128: f(std::integral_constant<int, 128>{}); break;
    default: f(std::integral_constant<int, 256>{}); break;
  }
}

// Row pitch (floats) of a shared [rows][kE] tile: a multiple of 4, so that mma_nt reads rows as
// float4, and 4 more than a multiple of 32 banks, so that the 8 rows a quarter-warp reads at one
// column (one float4 each) fall in 8 distinct 16-byte bank groups. Every such tile starts a
// layout (offsets multiples of 4; the dynamic shared-memory base is 16-byte aligned).
__host__ __device__ constexpr int row_pitch(int kE) { return kE + 4; }

// dst[i][e] (pitch row_pitch(kE)) = row_ptr(i)[e] for i < rows, e < E, and 0 elsewhere: padding
// must be 0, since a padded v row times p = 0 must not give NaN and a padded column adds 0 to a dot.
template <int kRows, int kE, class RowPtr>
__device__ __forceinline__ void load_tile(float* dst, int rows, int E, RowPtr row_ptr) {
  for (int idx = threadIdx.x; idx < kRows * kE; idx += kThreads) {
    const int i = idx / kE, e = idx % kE;
    float x = 0.0f;
    if (i < rows && e < E) x = load(row_ptr(i) + e);
    dst[i * row_pitch(kE) + e] = x;
  }
}

// acc[a][c] += sum_{x < kK} A[(ty + 16 a) kLda + x] B[(tx + 16 c) kLdb + x]   (A B^T)
// Rows are read 4 floats at a time (A and B 16-byte aligned, kLda, kLdb, kK multiples of 4); the
// sum still runs over x in order.
template <int kA, int kC, int kK, int kLda, int kLdb>
__device__ __forceinline__ void mma_nt(float (&acc)[kA][kC], const float* A, const float* B,
                                       int ty, int tx) {
  static_assert(kK % 4 == 0 && kLda % 4 == 0 && kLdb % 4 == 0, "float4 rows");
#pragma unroll 1
  for (int x = 0; x < kK; x += 4) {
    float4 av[kA], bv[kC];
#pragma unroll
    for (int i = 0; i < kA; ++i)
      av[i] = *reinterpret_cast<const float4*>(A + (ty + 16 * i) * kLda + x);
#pragma unroll
    for (int j = 0; j < kC; ++j)
      bv[j] = *reinterpret_cast<const float4*>(B + (tx + 16 * j) * kLdb + x);
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kC; ++j) {
        float r = fmaf(av[i].x, bv[j].x, acc[i][j]);
        r = fmaf(av[i].y, bv[j].y, r);
        r = fmaf(av[i].z, bv[j].z, r);
        acc[i][j] = fmaf(av[i].w, bv[j].w, r);
      }
  }
}

// acc[a][c] += sum_{x < kK} A[(ty + 16 a) kLda + x] B[x kLdb + tx + 16 c]   (A B)
template <int kA, int kC, int kK, int kLda, int kLdb>
__device__ __forceinline__ void mma_nn(float (&acc)[kA][kC], const float* A, const float* B,
                                       int ty, int tx) {
#pragma unroll 4
  for (int x = 0; x < kK; ++x) {
    float av[kA], bv[kC];
#pragma unroll
    for (int i = 0; i < kA; ++i) av[i] = A[(ty + 16 * i) * kLda + x];
#pragma unroll
    for (int j = 0; j < kC; ++j) bv[j] = B[x * kLdb + tx + 16 * j];
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int j = 0; j < kC; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// Max and sum over the 16 threads of a row (one half-warp); every lane of the warp must call.
__device__ __forceinline__ float row_max16(float v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off, 16));
  return v;
}
__device__ __forceinline__ float row_sum16(float v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off, 16);
  return v;
}

// Kernels above 48 KB of dynamic shared memory must opt in.
template <class Kernel>
void allow_shared(Kernel kernel, std::size_t bytes, const char* what) {
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(bytes)),
          what);
}

inline int sm_count() {
  static int n = [] {
    int dev = 0, count = 0;
    check(cudaGetDevice(&dev), "attention: cudaGetDevice");
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev),
          "attention: multiprocessor count");
    return count;
  }();
  return n;
}

// A device buffer for split partials and the backward's D, grown on demand and kept, so that
// steps do not allocate. One per process (one device per rank); every use is on the default
// stream, so consecutive ops may share it.
inline float* workspace(std::size_t floats) {
  static float* buf = nullptr;
  static std::size_t cap = 0;
  if (floats > cap) {
    if (buf) {
      check(cudaDeviceSynchronize(), "attention workspace: sync before growing");
      check(cudaFree(buf), "attention workspace: free");
    }
    check(cudaMalloc(&buf, floats * sizeof(float)), "attention workspace: cudaMalloc");
    cap = floats;
  }
  return buf;
}

// Checks q [B, T, H, E], k = v [B, S, G, E] (device, Elem) and returns the shape.
inline Shape check_shapes(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  require_device(op, "q", q, kElemType);
  require_device(op, "k", k, kElemType);
  require_device(op, "v", v, kElemType);
  OPD_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.shape() == k.shape() && k.dim(0) == q.dim(0) &&
                k.dim(3) == q.dim(3) && k.dim(2) > 0 && q.dim(2) % k.dim(2) == 0,
            op, ": q ", q.describe(), " k ", k.describe(), " v ", v.describe());
  OPD_CHECK(q.dim(3) <= kMaxHeadDim, op, ": head dimension ", q.dim(3), " above ", kMaxHeadDim);
  constexpr int64_t kMax = int64_t{1} << 30;
  OPD_CHECK(q.dim(0) * q.dim(1) < kMax && q.dim(1) * q.dim(2) < kMax && k.dim(0) * k.dim(1) < kMax &&
                k.dim(0) * k.dim(2) <= 65535,
            op, ": sizes beyond this kernel's int indexing: q ", q.describe(), " k ", k.describe());
  return Shape{static_cast<int>(q.dim(0)), static_cast<int>(q.dim(1)), static_cast<int>(q.dim(2)),
               static_cast<int>(k.dim(2)), static_cast<int>(q.dim(3)), static_cast<int>(k.dim(1))};
}

// Arguments of the flash forward kernel (attention_forward.cu). Forward form: out and lse (lse
// may be null without splits), split k writing at out + k out_split_stride, lse + k
// lse_split_stride. Delta form (the backward's first pass): P from lse_in, delta = dO . (P V).
struct FwdArgs {
  const Elem *q = nullptr, *k = nullptr, *v = nullptr;
  const int32_t* q_pos = nullptr;
  const float* lse_in = nullptr;
  const Elem* d_out = nullptr;
  float scale = 1.0f;
  float *out = nullptr, *lse = nullptr, *delta = nullptr;
  int64_t out_split_stride = 0, lse_split_stride = 0;
  int max_tiles = 0, splits = 1;
  Shape s{};
};
// The forward (keys split over blocks when the launch is small) into out [B, T, H, E] and lse
// [B, H, T] (may be null); the delta pass into args.delta [B, H, T].
void flash_forward_run(const FwdArgs& args, float* out, float* lse);
void flash_delta_run(const FwdArgs& args);

// The simple kernels that keep P (attention_probs.cu): a test and debugging path.
void probs_forward(const Shape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& q_pos, float scale, Tensor& out, Tensor& probs, Tensor* lse);
void probs_backward(const Shape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& probs, const Tensor& d_out, float scale, Tensor& dq, Tensor& dk,
                    Tensor& dv);

}  // namespace opd::backend::cuda::attn
