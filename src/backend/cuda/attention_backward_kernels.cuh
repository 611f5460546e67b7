// The flash attention backward kernels (launched by attention_backward.cu): dK and dV per key
// tile over every query tile of the GQA group, and dQ per query tile over its visible key tiles,
// P recomputed from the forward's lse, D from the forward kernel's delta form.
#pragma once

#include "backend/cuda/attention_kernels.cuh"

namespace opd::backend::cuda::attn {
inline namespace OPD_ATTN_KERNEL_NS {

// Per query row of a tile: keys seen (0 past the last row), lse and D; returns whether the row
// sees key j0. Called by threads < kBr.
__device__ __forceinline__ bool load_row_stats(const BwdArgs& a, int b, int g, int n0, int rows,
                                               int i, int* vis_s, float* lse_s, float* d_s,
                                               int j0) {
  int vis = 0;
  float l = 0.0f, d = 0.0f;
  if (i < rows) {
    const Row r = row_of(a.s, g, n0 + i);
    vis = visible_keys(a.q_pos[static_cast<int64_t>(b) * a.s.T + r.t], a.s.S);
    l = a.lse[lse_offset(a.s, b, r.h, r.t)];
    d = a.delta[lse_offset(a.s, b, r.h, r.t)];
  }
  vis_s[i] = vis;
  lse_s[i] = l;
  d_s[i] = d;
  return vis > j0;
}

// S = Q K^T and dP = dO V^T for the thread's rows ty + 16 i and keys tx + 16 c of a tile, then
// dS (and P) with the row's visibility, lse and D; masked entries are exactly 0.
template <int kA, int kC, int kE>
__device__ __forceinline__ void scores_to_ds(const float* qs, const float* dos, const float* ks,
                                             const float* vs, const int* vis_s, const float* lse_s,
                                             const float* d_s, int j0, float scale, int ty, int tx,
                                             float (&p)[kA][kC], float (&ds)[kA][kC]) {
  constexpr int kPitch = row_pitch(kE);
#pragma unroll
  for (int i = 0; i < kA; ++i)
#pragma unroll
    for (int c = 0; c < kC; ++c) p[i][c] = ds[i][c] = 0.0f;
  mma_nt<kA, kC, kE, kPitch, kPitch>(p, qs, ks, ty, tx);    // q . k
  mma_nt<kA, kC, kE, kPitch, kPitch>(ds, dos, vs, ty, tx);  // dO . v
#pragma unroll
  for (int i = 0; i < kA; ++i) {
    const int row = ty + 16 * i;
    const int vis = vis_s[row];
    const float l = lse_s[row], d = d_s[row];
#pragma unroll
    for (int c = 0; c < kC; ++c) {
      const float pr = j0 + tx + 16 * c < vis ? prob_from_lse(p[i][c] * scale, l) : 0.0f;
      p[i][c] = pr;
      ds[i][c] = pr * (ds[i][c] - d);
    }
  }
}

// Shared memory of the dK/dV kernel, in floats: K, V tiles [kBc], Q, dO tiles [kBr] (pitch
// row_pitch(kE)), P^T and dS^T [kBc][kBr + 4], per-row visibility, lse, D.
template <int kE, int kBr, int kBc>
struct DkdvSmem {
  static constexpr int kK = 0;
  static constexpr int kV = kK + kBc * row_pitch(kE);
  static constexpr int kQ = kV + kBc * row_pitch(kE);
  static constexpr int kDO = kQ + kBr * row_pitch(kE);
  static constexpr int kPT = kDO + kBr * row_pitch(kE);
  static constexpr int kDST = kPT + kBc * (kBr + 4);
  static constexpr int kVis = kDST + kBc * (kBr + 4);
  static_assert(kPT % 4 == 0 && kDST % 4 == 0, "float4 tiles start 16-byte aligned");
  static constexpr int kLse = kVis + kBr;
  static constexpr int kD = kLse + kBr;
  static constexpr std::size_t kBytes = static_cast<std::size_t>(kD + kBr) * sizeof(float);
};

template <int kE, int kBr, int kBc>
__global__ void __launch_bounds__(kThreads) flash_dkdv(BwdArgs a) {
  using L = DkdvSmem<kE, kBr, kBc>;
  constexpr int kA = kBr / 16, kC = kBc / 16, kKA = kBc / 16, kCE = kE / 16;
  constexpr int kPitch = row_pitch(kE), kTPitch = kBr + 4;  // float4 rows for mma_nn
  OPD_DYNAMIC_SMEM(smem_words);
  float* smem = reinterpret_cast<float*>(smem_words);
  float* ks = smem + L::kK;
  float* vs = smem + L::kV;
  float* qs = smem + L::kQ;
  float* dos = smem + L::kDO;
  float* pt = smem + L::kPT;
  float* dst = smem + L::kDST;
  int* vis_s = reinterpret_cast<int*>(smem + L::kVis);
  float* lse_s = smem + L::kLse;
  float* d_s = smem + L::kD;

  const Shape& s = a.s;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int b = blockIdx.y / s.G, g = blockIdx.y % s.G;
  const int j0 = blockIdx.x * kBc;
  const int keys = min(kBc, s.S - j0);
  load_tile<kBc, kE>(ks, keys, s.E, KeyRows{a.k, s, b, g, j0});
  load_tile<kBc, kE>(vs, keys, s.E, KeyRows{a.v, s, b, g, j0});

  // The thread's keys ty + 16 i, columns tx + 16 c.
  float dk[kKA][kCE], dv[kKA][kCE];
#pragma unroll
  for (int i = 0; i < kKA; ++i)
#pragma unroll
    for (int c = 0; c < kCE; ++c) dk[i][c] = dv[i][c] = 0.0f;

  const int total_rows = s.rows();
  for (int n0 = 0; n0 < total_rows; n0 += kBr) {
    const int rows = min(kBr, total_rows - n0);
    __syncthreads();  // the previous tile's reads of the row stats, qs, dos, pt, dst are done
    bool sees = false;
    if (threadIdx.x < kBr)
      sees = load_row_stats(a, b, g, n0, rows, threadIdx.x, vis_s, lse_s, d_s, j0);
    if (!__syncthreads_or(sees)) continue;  // no row of this tile sees a key of this block
    load_tile<kBr, kE>(qs, rows, s.E, QueryRows{a.q, s, b, g, n0});
    load_tile<kBr, kE>(dos, rows, s.E, QueryRows{a.d_out, s, b, g, n0});
    __syncthreads();
    float p[kA][kC], ds[kA][kC];
    scores_to_ds<kA, kC, kE>(qs, dos, ks, vs, vis_s, lse_s, d_s, j0, a.scale, ty, tx, p, ds);
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int c = 0; c < kC; ++c) {
        pt[(tx + 16 * c) * kTPitch + ty + 16 * i] = p[i][c];
        dst[(tx + 16 * c) * kTPitch + ty + 16 * i] = ds[i][c];
      }
    __syncthreads();
    mma_nn<kKA, kCE, kBr, kTPitch, kPitch>(dv, pt, dos, ty, tx);  // P^T dO
    mma_nn<kKA, kCE, kBr, kTPitch, kPitch>(dk, dst, qs, ty, tx);  // dS^T Q
  }

  // Every key of [0, S) belongs to one block: dk and dv are overwritten, 0 for unseen keys.
#pragma unroll
  for (int i = 0; i < kKA; ++i) {
    const int jj = ty + 16 * i;
    if (jj >= keys) continue;
    const int64_t at = kv_offset(s, b, j0 + jj, g);
#pragma unroll
    for (int c = 0; c < kCE; ++c) {
      const int e = acc_col<kCE>(c, tx);
      if (e < s.E) {
        a.dk[at + e] = dk[i][c] * a.scale;
        a.dv[at + e] = dv[i][c];
      }
    }
  }
}

// Shared memory of the dQ kernel, in floats: Q, dO tiles [kBr], K, V tiles [kBc] (pitch
// row_pitch(kE)), dS [kBr][kBc + 4], per-row visibility, lse, D.
template <int kE, int kBr, int kBc>
struct DqSmem {
  static constexpr int kQ = 0;
  static constexpr int kDO = kQ + kBr * row_pitch(kE);
  static constexpr int kK = kDO + kBr * row_pitch(kE);
  static constexpr int kV = kK + kBc * row_pitch(kE);
  static constexpr int kDS = kV + kBc * row_pitch(kE);
  static_assert(kDS % 4 == 0, "float4 tiles start 16-byte aligned");
  static constexpr int kVis = kDS + kBr * (kBc + 4);
  static constexpr int kLse = kVis + kBr;
  static constexpr int kD = kLse + kBr;
  static constexpr std::size_t kBytes = static_cast<std::size_t>(kD + kBr) * sizeof(float);
};

template <int kE, int kBr, int kBc>
__global__ void __launch_bounds__(kThreads) flash_dq(BwdArgs a) {
  using L = DqSmem<kE, kBr, kBc>;
  constexpr int kA = kBr / 16, kC = kBc / 16, kCE = kE / 16;
  constexpr int kPitch = row_pitch(kE), kSPitch = kBc + 4;  // float4 rows for mma_nn
  OPD_DYNAMIC_SMEM(smem_words);
  float* smem = reinterpret_cast<float*>(smem_words);
  float* qs = smem + L::kQ;
  float* dos = smem + L::kDO;
  float* ks = smem + L::kK;
  float* vs = smem + L::kV;
  float* dss = smem + L::kDS;
  int* vis_s = reinterpret_cast<int*>(smem + L::kVis);
  float* lse_s = smem + L::kLse;
  float* d_s = smem + L::kD;
  __shared__ int kv_end_s;

  const Shape& s = a.s;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int b = blockIdx.y / s.G, g = blockIdx.y % s.G;
  const int n0 = blockIdx.x * kBr;
  const int rows = min(kBr, s.rows() - n0);
  if (threadIdx.x == 0) kv_end_s = 0;
  __syncthreads();
  if (threadIdx.x < kBr) {
    load_row_stats(a, b, g, n0, rows, threadIdx.x, vis_s, lse_s, d_s, 0);
    atomicMax(&kv_end_s, vis_s[threadIdx.x]);
  }
  load_tile<kBr, kE>(qs, rows, s.E, QueryRows{a.q, s, b, g, n0});
  load_tile<kBr, kE>(dos, rows, s.E, QueryRows{a.d_out, s, b, g, n0});
  __syncthreads();
  const int tiles = ceil_div(kv_end_s, kBc);

  float acc[kA][kCE];
#pragma unroll
  for (int i = 0; i < kA; ++i)
#pragma unroll
    for (int c = 0; c < kCE; ++c) acc[i][c] = 0.0f;

  for (int kt = 0; kt < tiles; ++kt) {
    const int j0 = kt * kBc;
    const int keys = min(kBc, s.S - j0);
    __syncthreads();  // the previous tile's reads of ks, vs, dss are done
    load_tile<kBc, kE>(ks, keys, s.E, KeyRows{a.k, s, b, g, j0});
    load_tile<kBc, kE>(vs, keys, s.E, KeyRows{a.v, s, b, g, j0});
    __syncthreads();
    float p[kA][kC], ds[kA][kC];
    scores_to_ds<kA, kC, kE>(qs, dos, ks, vs, vis_s, lse_s, d_s, j0, a.scale, ty, tx, p, ds);
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int c = 0; c < kC; ++c) dss[(ty + 16 * i) * kSPitch + tx + 16 * c] = ds[i][c];
    __syncthreads();
    mma_nn<kA, kCE, kBc, kSPitch, kPitch>(acc, dss, ks, ty, tx);  // dS K
  }

#pragma unroll
  for (int i = 0; i < kA; ++i) {
    const int row = ty + 16 * i;
    if (row >= rows) continue;
    const Row r = row_of(s, g, n0 + row);
    float* o = a.dq + q_offset(s, b, r.t, r.h);
#pragma unroll
    for (int c = 0; c < kCE; ++c)
      if (acc_col<kCE>(c, tx) < s.E) o[acc_col<kCE>(c, tx)] = acc[i][c] * a.scale;
  }
}

}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::attn
