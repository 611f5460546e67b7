// The device building blocks of the flash attention kernels (attention_forward_kernel.cuh,
// attention_backward_kernels.cuh): the element type in memory, shared-memory tile loads, the
// 16 x 16 thread micro-tile products, half-warp row reductions and the kernels' arguments.
// Plain device code without runtime calls, so that tests/backend/simt_emulator.hpp can compile
// it as C++ and run the kernels on CPU threads.
//
// Thread layout of every flash kernel: 256 threads as 16 x 16, tx = threadIdx.x % 16 (columns),
// ty = threadIdx.x / 16 (rows). A thread owns rows ty + 16 a of a tile, and of a score tile the
// key columns tx + 16 c, of an accumulator the head-dimension columns acc_col(c, tx). The 16
// threads of a row are one half-warp (row reductions are shuffles).
#pragma once

#include <cstdint>

#include "backend/cuda/attention_tiles.hpp"

// The namespace the device code lives in (inline in attn): the emulator compiles the same code
// into another, so that its symbols never meet the library's kernels at link time.
#ifndef OPD_ATTN_KERNEL_NS
#define OPD_ATTN_KERNEL_NS device_code
#endif

// The block's dynamic shared memory as float4 (16-byte aligned after any static shared data).
#ifndef OPD_DYNAMIC_SMEM
#define OPD_DYNAMIC_SMEM(name) extern __shared__ float4 name[]
#endif

namespace opd::backend::cuda::attn {
inline namespace OPD_ATTN_KERNEL_NS {

// q, k, v and d_out in memory: fp32 today. A bf16 path changes Elem, load() and kElemType
// (attention_common.cuh); the kernels compute in fp32 from load()'s result either way.
using Elem = float;
__device__ __forceinline__ float load(const Elem* p) { return *p; }

constexpr int kThreads = 256;

// Row pitch (floats) of a shared [rows][kE] tile: a multiple of 4, so that mma_nt reads rows as
// float4, and 4 more than a multiple of 32 banks, so that the 8 rows a quarter-warp reads at one
// column (one float4 each) fall in 8 distinct 16-byte bank groups. Every such tile starts a
// layout (offsets multiples of 4; the dynamic shared-memory base is 16-byte aligned).
OPD_HD constexpr int row_pitch(int kE) { return kE + 4; }

// dst[i][e] (pitch row_pitch(kE)) = row_ptr(i)[e] for i < rows, e < E, and 0 elsewhere: padding
// must be 0, since a padded v row times p = 0 must not give NaN and a padded column adds 0 to a
// dot.
template <int kRows, int kE, class RowPtr>
__device__ __forceinline__ void load_tile(float* dst, int rows, int E, RowPtr row_ptr) {
  for (int idx = threadIdx.x; idx < kRows * kE; idx += kThreads) {
    const int i = idx / kE, e = idx % kE;
    float x = 0.0f;
    if (i < rows && e < E) x = load(row_ptr(i) + e);
    dst[i * row_pitch(kE) + e] = x;
  }
}

// The rows of a tile for load_tile: query rows n0 + i of problem (b, g) in a q-shaped tensor (q,
// dO), and keys j0 + i in a k-shaped one (k, v).
struct QueryRows {
  const Elem* x;
  Shape s;
  int b, g, n0;
  __device__ const Elem* operator()(int i) const {
    const Row r = row_of(s, g, n0 + i);
    return x + q_offset(s, b, r.t, r.h);
  }
};
struct KeyRows {
  const Elem* x;
  Shape s;
  int b, g, j0;
  __device__ const Elem* operator()(int i) const { return x + kv_offset(s, b, j0 + i, g); }
};

// acc[a][c] += sum_{x < kK} A[(ty + 16 a) kLda + x] B[(tx + 16 c) kLdb + x]   (A B^T)
// Rows are read 4 floats at a time (A and B 16-byte aligned, kLda, kLdb, kK multiples of 4); the
// sum still runs over x in order.
template <int kA, int kC, int kK, int kLda, int kLdb>
__device__ __forceinline__ void mma_nt(float (&acc)[kA][kC], const float* A, const float* B, int ty,
                                       int tx) {
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

// The head-dimension column of a thread's accumulator entry c (0 <= c < kC = kE / 16): a thread
// owns kW = min(kC, 4) adjacent columns of every 16 kW, so that mma_nn reads them as one vector.
template <int kC>
OPD_HD constexpr int acc_col(int c, int tx) {
  constexpr int kW = kC < 4 ? kC : 4;
  return (c / kW) * (16 * kW) + tx * kW + c % kW;
}

__device__ __forceinline__ float component(const float4& v, int u) {
  return u == 0 ? v.x : u == 1 ? v.y : u == 2 ? v.z : v.w;
}

// acc[a][c] += sum_{x < kK} A[(ty + 16 a) kLda + x] B[x kLdb + acc_col<kC>(c, tx)]   (A B)
// A rows are read as float4, B rows as float4 (float2 for kC = 2); A, B 16-byte aligned, kLda,
// kLdb, kK multiples of 4. The sum runs over x in order.
template <int kA, int kC, int kK, int kLda, int kLdb>
__device__ __forceinline__ void mma_nn(float (&acc)[kA][kC], const float* A, const float* B, int ty,
                                       int tx) {
  constexpr int kW = kC < 4 ? kC : 4;
  static_assert((kW == 2 || kW == 4) && kC % kW == 0, "2, 4 or a multiple of 4 columns");
  static_assert(kK % 4 == 0 && kLda % 4 == 0 && kLdb % 4 == 0, "float4 rows");
#pragma unroll 1
  for (int x = 0; x < kK; x += 4) {
    float4 av[kA];
#pragma unroll
    for (int i = 0; i < kA; ++i)
      av[i] = *reinterpret_cast<const float4*>(A + (ty + 16 * i) * kLda + x);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const float* row = B + (x + u) * kLdb + tx * kW;
      float bv[kC];
#pragma unroll
      for (int g = 0; g < kC / kW; ++g) {
        if constexpr (kW == 4) {
          const float4 t = *reinterpret_cast<const float4*>(row + g * 16 * kW);
          bv[4 * g] = t.x;
          bv[4 * g + 1] = t.y;
          bv[4 * g + 2] = t.z;
          bv[4 * g + 3] = t.w;
        } else {
          const float2 t = *reinterpret_cast<const float2*>(row + g * 16 * kW);
          bv[2 * g] = t.x;
          bv[2 * g + 1] = t.y;
        }
      }
#pragma unroll
      for (int i = 0; i < kA; ++i)
#pragma unroll
        for (int j = 0; j < kC; ++j) acc[i][j] = fmaf(component(av[i], u), bv[j], acc[i][j]);
    }
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
// A forward block's row statistics, by threads < kBr: row i's visible keys (0 past the last row)
// and, in delta form, the forward's lse; *kv_end (0 and synchronised before) becomes the tile's
// largest count.
template <int kBr, bool kDelta>
__device__ __forceinline__ void forward_row_stats(const FwdArgs& a, int b, int g, int n0, int rows,
                                                  int* vis_s, float* lse_s, int* kv_end) {
  const int i = static_cast<int>(threadIdx.x);
  if (i >= kBr) return;
  int vis = 0;
  float l = 0.0f;
  if (i < rows) {
    const Row r = row_of(a.s, g, n0 + i);
    vis = visible_keys(a.q_pos[static_cast<int64_t>(b) * a.s.T + r.t], a.s.S);
    if (kDelta) l = a.lse_in[lse_offset(a.s, b, r.h, r.t)];
  }
  vis_s[i] = vis;
  lse_s[i] = l;
  atomicMax(kv_end, vis);
}

// Arguments of the backward kernels (attention_backward_kernels.cuh); delta = dO . O per row.
struct BwdArgs {
  const Elem *q, *k, *v, *d_out;
  const int32_t* q_pos;
  const float *lse, *delta;
  float scale;
  float *dq, *dk, *dv;
  Shape s;
};

}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::attn
