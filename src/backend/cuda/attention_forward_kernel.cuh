// The flash attention forward kernel (launched by attention_forward.cu): a block per (tile of
// query rows, batch and kv head, key split) walks its visible key tiles with an online softmax;
// its delta form computes the backward's D = dO . (P V) from the forward's lse. And the kernel
// that combines key splits.
#pragma once

#include "backend/cuda/attention_kernels.cuh"

namespace opd::backend::cuda::attn {
inline namespace OPD_ATTN_KERNEL_NS {

// Shared memory of the forward kernel, in floats: Q tile, one K-or-V tile, P tile, per-row
// visible-key counts and lse.
template <int kE, int kBr, int kBc>
struct FwdSmem {
  static constexpr int kQ = 0;
  static constexpr int kKV = kQ + kBr * row_pitch(kE);
  static constexpr int kP = kKV + kBc * row_pitch(kE);
  static constexpr int kVis = kP + kBr * (kBc + 4);
  static constexpr int kLse = kVis + kBr;
  static constexpr std::size_t kBytes = static_cast<std::size_t>(kLse + kBr) * sizeof(float);
  static_assert(kKV % 4 == 0 && kP % 4 == 0, "float4 tiles start 16-byte aligned");
};

template <int kE, int kBr, int kBc, bool kDelta>
__global__ void __launch_bounds__(kThreads) flash_forward(FwdArgs a) {
  using L = FwdSmem<kE, kBr, kBc>;
  constexpr int kA = kBr / 16, kC = kBc / 16, kCE = kE / 16;
  constexpr int kPitch = row_pitch(kE), kPPitch = kBc + 4;  // float4 rows for mma_nn
  OPD_DYNAMIC_SMEM(smem_words);
  float* smem = reinterpret_cast<float*>(smem_words);
  float* qs = smem + L::kQ;
  float* kvs = smem + L::kKV;
  float* ps = smem + L::kP;
  int* vis_s = reinterpret_cast<int*>(smem + L::kVis);
  float* lse_s = smem + L::kLse;
  __shared__ int kv_end_s;

  const Shape& s = a.s;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int b = blockIdx.y / s.G, g = blockIdx.y % s.G;
  const int n0 = blockIdx.x * kBr;
  const int rows = min(kBr, s.rows() - n0);

  // Per row: keys seen (0 past the last row), and in delta form the forward's lse; the tile's
  // keys end at its rows' largest count.
  if (threadIdx.x == 0) kv_end_s = 0;
  __syncthreads();
  forward_row_stats<kBr, kDelta>(a, b, g, n0, rows, vis_s, lse_s, &kv_end_s);
  load_tile<kBr, kE>(qs, rows, s.E, QueryRows{a.q, s, b, g, n0});
  __syncthreads();
  const TileRange range = split_tiles(kv_end_s, kBc, a.max_tiles, a.splits, blockIdx.z);

  int vis[kA];
  float row_lse[kA];
  OnlineSoftmax sm[kA];  // sm[a].l: this thread's part of the row sum (its columns)
  float acc[kA][kCE];
#pragma unroll
  for (int i = 0; i < kA; ++i) {
    vis[i] = vis_s[ty + 16 * i];
    row_lse[i] = lse_s[ty + 16 * i];
#pragma unroll
    for (int c = 0; c < kCE; ++c) acc[i][c] = 0.0f;
  }

  for (int kt = range.begin; kt < range.end; ++kt) {
    const int j0 = kt * kBc;
    const int keys = min(kBc, s.S - j0);
    __syncthreads();  // the previous tile's reads of kvs and ps are done
    load_tile<kBc, kE>(kvs, keys, s.E, KeyRows{a.k, s, b, g, j0});
    __syncthreads();
    float sc[kA][kC];
#pragma unroll
    for (int i = 0; i < kA; ++i)
#pragma unroll
      for (int c = 0; c < kC; ++c) sc[i][c] = 0.0f;
    mma_nt<kA, kC, kE, kPitch, kPitch>(sc, qs, kvs, ty, tx);
#pragma unroll
    for (int i = 0; i < kA; ++i) {
      float p[kC];
      if constexpr (kDelta) {
#pragma unroll
        for (int c = 0; c < kC; ++c)
          p[c] = j0 + tx + 16 * c < vis[i] ? prob_from_lse(sc[i][c] * a.scale, row_lse[i]) : 0.0f;
      } else {
        float mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          sc[i][c] = j0 + tx + 16 * c < vis[i] ? sc[i][c] * a.scale : -INFINITY;
          mx = fmaxf(mx, sc[i][c]);
        }
        const float alpha = sm[i].rescale(row_max16(mx));
#pragma unroll
        for (int c = 0; c < kCE; ++c) acc[i][c] *= alpha;
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          p[c] = sm[i].prob(sc[i][c]);
          sm[i].l += p[c];
        }
      }
#pragma unroll
      for (int c = 0; c < kC; ++c) ps[(ty + 16 * i) * kPPitch + tx + 16 * c] = p[c];
    }
    __syncthreads();  // P complete, K no longer read
    load_tile<kBc, kE>(kvs, keys, s.E, KeyRows{a.v, s, b, g, j0});
    __syncthreads();
    mma_nn<kA, kCE, kBc, kPPitch, kPitch>(acc, ps, kvs, ty, tx);
  }

#pragma unroll
  for (int i = 0; i < kA; ++i) {
    const int row = ty + 16 * i;
    const bool valid = row < rows;
    const Row r = row_of(s, g, n0 + row);
    if constexpr (kDelta) {
      // acc holds O (P already normalised): D = dO . O.
      float part = 0.0f;
      if (valid) {
        const Elem* go = a.d_out + q_offset(s, b, r.t, r.h);
#pragma unroll
        for (int c = 0; c < kCE; ++c)
          if (acc_col<kCE>(c, tx) < s.E) part += acc[i][c] * load(go + acc_col<kCE>(c, tx));
      }
      const float d = row_sum16(part);
      if (valid && tx == 0) a.delta[lse_offset(s, b, r.h, r.t)] = d;
    } else {
      const float l = row_sum16(sm[i].l);
      if (valid) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        float* o = a.out + blockIdx.z * a.out_split_stride + q_offset(s, b, r.t, r.h);
#pragma unroll
        for (int c = 0; c < kCE; ++c)
          if (acc_col<kCE>(c, tx) < s.E) o[acc_col<kCE>(c, tx)] = acc[i][c] * inv;
        if (a.lse && tx == 0)
          a.lse[blockIdx.z * a.lse_split_stride + lse_offset(s, b, r.h, r.t)] = sm[i].lse(l);
      }
    }
  }
}

// out and lse from the splits' partial outputs and lse (layouts of out and lse, split-major).
__global__ void combine_splits(const float* part_out, const float* part_lse, int splits,
                               int64_t out_stride, int64_t lse_stride, Shape s, float* out,
                               float* lse) {
  const int64_t n = static_cast<int64_t>(s.B) * s.T * s.H * s.E;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int e = static_cast<int>(idx % s.E);
    const int64_t row = idx / s.E;  // (b, t, h)
    const int h = static_cast<int>(row % s.H);
    const int t = static_cast<int>((row / s.H) % s.T);
    const int b = static_cast<int>(row / (int64_t(s.H) * s.T));
    const int64_t li = lse_offset(s, b, h, t);
    float mx = -INFINITY;
    for (int k = 0; k < splits; ++k) mx = merge_lse_max(mx, part_lse[k * lse_stride + li]);
    float sum = 0.0f;
    for (int k = 0; k < splits; ++k) sum += split_weight(part_lse[k * lse_stride + li], mx);
    const float total = combined_lse(mx, sum);
    float o = 0.0f;
    for (int k = 0; k < splits; ++k)
      o += split_weight(part_lse[k * lse_stride + li], total) * part_out[k * out_stride + idx];
    out[idx] = o;
    if (lse && e == 0) lse[li] = total;
  }
}

}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::attn
