// The warp matrix (tensor core) part of the SIMT emulator (simt_emulator.hpp): bf16 as CUDA's
// __nv_bfloat16 with its conversions, __syncwarp, and the subset of nvcuda::wmma that the
// tensor-core attention kernels use (16 x 16 x 16 bf16 fragments, f32 accumulators).
//
// A fragment's layout across the lanes is opaque in CUDA, so the emulator gives every lane the
// whole 16 x 16 tile: a load reads all of it (every lane reads the same memory, as the warp does
// together), an mma computes all of it, and a store is written by lane 0 alone, so that a lane
// that reads a stored tile without a __syncwarp first can see stale data, as on a GPU.
// It checks what CUDA requires of the calls: a pointer 256-bit aligned (relative to the
// dynamic shared memory, whose base a kernel declares 128-byte aligned) and a leading dimension
// that is a multiple of 16 bytes. A violation sets a flag the launch turns into an exception.
//
// Include after simt_emulator.hpp and before the kernel headers, in a test translation unit only.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/simt_emulator.hpp"
#include "core/bf16.hpp"

struct __nv_bfloat16 {
  uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {opd::core::float_to_bf16(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return opd::core::bf16_to_float(h.bits); }

namespace simt {

inline void syncwarp() {
  Block& b = *tls.blk;
  b.warp_bar[static_cast<int>(tls.thread.x) / kWarp]->arrive_and_wait();
}
inline int lane() { return static_cast<int>(tls.thread.x) % kWarp; }

// CUDA's rules for a wmma load or store at p with leading dimension ldm (elements of `bytes`).
inline void check_matrix_access(const void* p, unsigned ldm, std::size_t bytes) {
  Block& b = *tls.blk;
  const auto* base = reinterpret_cast<const unsigned char*>(b.smem.data());
  const auto* at = static_cast<const unsigned char*>(p);
  const bool shared = at >= base && at < base + b.smem_words * sizeof(float4);
  const std::uintptr_t offset =
      shared ? static_cast<std::uintptr_t>(at - base) : reinterpret_cast<std::uintptr_t>(at);
  if (offset % 32 != 0 || (ldm * bytes) % 16 != 0) b.bad_matrix_access = true;
}

}  // namespace simt

#define __syncwarp(...) ::simt::syncwarp()

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator knows the 16 x 16 x 16 shape only");
  float x[16][16];
};

template <class Layout>
inline constexpr bool kRowMajor = std::is_same_v<Layout, row_major>;

// matrix_a: element (i, k); matrix_b: element (k, j). Row-major keeps (r, c) at p[r ldm + c].
template <class Use, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f,
                             const __nv_bfloat16* p, unsigned ldm) {
  ::simt::check_matrix_access(p, ldm, sizeof(__nv_bfloat16));
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.x[r][c] = __bfloat162float(kRowMajor<Layout> ? p[r * ldm + c] : p[c * ldm + r]);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  ::simt::check_matrix_access(p, ldm, sizeof(float));
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout) {
  ::simt::check_matrix_access(p, ldm, sizeof(float));
  if (::simt::lane() != 0) return;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r][c];
}

inline void fill_fragment(fragment<accumulator, 16, 16, 16, float>& f, float v) {
  for (auto& row : f.x)
    for (float& e : row) e = v;
}

// d = a b + c, products exact (bf16 x bf16 fits a float), sums in f32 in k order. d may be c.
template <class LayoutA, class LayoutB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LayoutA>& a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16][16];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.x[i][j];
      for (int k = 0; k < 16; ++k) s = fmaf(a.x[i][k], b.x[k][j], s);
      out[i][j] = s;
    }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) d.x[i][j] = out[i][j];
}

}  // namespace nvcuda::wmma
