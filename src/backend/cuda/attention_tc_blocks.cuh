// The tensor-core building blocks of the bf16 flash attention kernels
// (attention_tc_forward_kernel.cuh, attention_tc_backward_kernels.cuh): tile sizes, shared-memory
// carving, f32 rows rounded into bf16 tiles, and one warp's product of tiles through wmma.
//
// The bf16 kernels compute what attention with bf16 operands means (backend/ops.hpp): q, k, v
// and dO rounded to bf16 (to nearest, ties to even), every product a bf16 x bf16 tensor-core
// product with f32 accumulation, softmax and its statistics in f32, P and dS rounded to bf16
// before they multiply V, dO, Q or K.
//
// Products go through nvcuda::wmma rather than raw mma.sync: a wmma fragment's lane layout is
// opaque, so these kernels never touch fragment elements; every elementwise step (scaling,
// masking, exponentials) runs on tiles in shared memory. That costs shared-memory traffic but
// leaves no lane-layout assumption that only a GPU could check, and lets
// tests/backend/simt_wmma.hpp run the same code on a CPU.
//
// Thread layout: kWarps = 4 warps. Where a warp owns 16 rows of a tile (the forward's and dQ's
// query rows, dK/dV's keys), its elementwise work maps lane l to row l % 16 and half l / 16 of
// the columns, so that a row's two lanes combine by one shuffle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <mma.h>
#endif

#include "backend/cuda/attention_kernels.cuh"

// The block's dynamic shared memory, 128-byte aligned (wmma wants 32-byte aligned tiles).
#ifndef OPD_TC_SMEM
#define OPD_TC_SMEM(name) extern __shared__ __align__(128) float4 name[]
#endif

// wmma's bf16 shapes need sm_80; a build for an older architecture keeps the f32 kernels only
// (attention_tc_supported() says no at run time) and these bodies trap.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define OPD_TC_ARCH 1
#else
#define OPD_TC_ARCH 0
#endif

namespace opd::backend::cuda::attn {
inline namespace OPD_ATTN_KERNEL_NS {
namespace tc {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxHeadDim = 128;  // larger heads run the f32 kernels

// Tiles per head-dimension bound kE (32, 64 or 128). The forward and dQ kernels give each warp
// 16 query rows (kBr = 64); dK/dV gives each warp 16 keys (kBc = 64). Sized to keep two or more
// blocks a multiprocessor within 228 KB of shared memory.
template <int kE>
struct Config {
  static constexpr int kFwdBr = 16 * kWarps, kFwdBc = kE <= 64 ? 64 : 32;
  static constexpr int kDkdvBr = kE <= 64 ? 64 : 32, kDkdvBc = 16 * kWarps;
  static constexpr int kDqBr = 16 * kWarps, kDqBc = kE <= 64 ? 64 : 32;
};

// Pitches (elements) of shared tiles: bf16 rows padded by 8 (16 bytes) and f32 rows by 4, so
// that 16 rows of a tile span a multiple of 32 bytes (wmma's alignment) without every row
// starting in the same banks.
OPD_HD constexpr int bf16_pitch(int cols) { return cols + 8; }
OPD_HD constexpr int f32_pitch(int cols) { return cols + 4; }

// Carving shared memory: region sizes rounded up to 128 bytes.
OPD_HD constexpr std::size_t round_up(std::size_t bytes) { return (bytes + 127) / 128 * 128; }
OPD_HD constexpr std::size_t bf16_tile(int rows, int cols) {
  return round_up(static_cast<std::size_t>(rows) * bf16_pitch(cols) * 2);
}
OPD_HD constexpr std::size_t f32_tile(int rows, int cols) {
  return round_up(static_cast<std::size_t>(rows) * f32_pitch(cols) * 4);
}

template <class T>
__device__ __forceinline__ T* at(float4* smem, std::size_t offset) {
  return reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(smem) + offset);
}

// dst[i][e] (pitch bf16_pitch(kE)) = bf16(row_ptr(i)[e]) for i < rows, e < E; 0 up to kRows x kE.
// The padding must be 0: a padded row of V times p = 0, or a padded column in a dot, adds 0.
// A thread takes 4 adjacent columns, read as one float4 where they are all in the row and
// 16-byte aligned (any E that is a multiple of 4 on an aligned tensor), one by one otherwise.
template <int kRows, int kE, class RowPtr>
__device__ __forceinline__ void load_tile_bf16(bf16* dst, int rows, int E, RowPtr row_ptr) {
  static_assert(kE % 4 == 0, "4 columns a thread");
  for (int idx = threadIdx.x; idx < kRows * (kE / 4); idx += kThreads) {
    const int i = idx / (kE / 4), e = 4 * (idx % (kE / 4));
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (i < rows) {
      const Elem* p = row_ptr(i) + e;
      if (e + 4 <= E && reinterpret_cast<std::uintptr_t>(p) % 16 == 0) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        x[0] = v.x;
        x[1] = v.y;
        x[2] = v.z;
        x[3] = v.w;
      } else {
        for (int u = 0; u < 4 && e + u < E; ++u) x[u] = load(p + u);
      }
    }
    bf16* d = dst + i * bf16_pitch(kE) + e;
    for (int u = 0; u < 4; ++u) d[u] = __float2bfloat16_rn(x[u]);
  }
}

// The 16 x 16 block (rb, cb) of a matrix kept in Layout with leading dimension ld.
template <class Layout>
__device__ __forceinline__ const bf16* block_at(const bf16* p, int ld, int rb, int cb) {
  if constexpr (std::is_same_v<Layout, wmma::row_major>)
    return p + 16 * rb * ld + 16 * cb;
  else
    return p + 16 * cb * ld + 16 * rb;
}

using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
template <class Layout>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, Layout>;
template <class Layout>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, Layout>;

// acc += A[16 x 16 kK] B[16 kK x 16] for output column block cb of B: A's rows 0..15 from a
// (ALayout, lda), B from b (BLayout, ldb). One warp, all lanes.
template <int kK, class ALayout, class BLayout>
__device__ __forceinline__ void mma_row(Acc& acc, const bf16* a, int lda, const bf16* b, int ldb,
                                        int cb) {
#pragma unroll
  for (int kk = 0; kk < kK; ++kk) {
    FragA<ALayout> fa;
    FragB<BLayout> fb;
    wmma::load_matrix_sync(fa, block_at<ALayout>(a, lda, 0, kk), lda);
    wmma::load_matrix_sync(fb, block_at<BLayout>(b, ldb, kk, cb), ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

// C[16 x 16 kN] = (kAccumulate ? C : 0) + A[16 x 16 kK] B[16 kK x 16 kN], C f32 row-major in
// shared memory (ldc). One warp; the caller __syncwarp()s before lanes read C.
template <int kN, int kK, class ALayout, class BLayout, bool kAccumulate>
__device__ __forceinline__ void warp_gemm(float* c, int ldc, const bf16* a, int lda, const bf16* b,
                                          int ldb) {
#pragma unroll 1
  for (int n = 0; n < kN; ++n) {
    Acc acc;
    if constexpr (kAccumulate)
      wmma::load_matrix_sync(acc, c + 16 * n, ldc, wmma::mem_row_major);
    else
      wmma::fill_fragment(acc, 0.0f);
    mma_row<kK, ALayout, BLayout>(acc, a, lda, b, ldb, n);
    wmma::store_matrix_sync(c + 16 * n, acc, ldc, wmma::mem_row_major);
  }
}

// The lanes' share of a warp's 16-row elementwise work: row lane % 16, columns [begin, begin +
// kCols / 2) of kCols.
struct HalfRow {
  int row, half;
  __device__ explicit HalfRow(int lane) : row(lane % 16), half(lane / 16) {}
  template <int kCols>
  __device__ int begin() const {
    return half * (kCols / 2);
  }
};

// The sum of v over the two lanes of a row (lane and lane ^ 16); both get the same bits.
__device__ __forceinline__ float pair_sum(float v) {
  return v + __shfl_xor_sync(0xffffffffu, v, 16, 32);
}
__device__ __forceinline__ float pair_max(float v) {
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 16, 32));
}

}  // namespace tc
}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::attn
