// The bf16 tensor-core flash attention backward kernels (launched by attention_backward.cu): the
// f32 kernels' decomposition (attention_backward_kernels.cuh) with every product on tensor cores.
//   dK/dV: a block per (64-key tile, batch and kv head); warp w owns keys 16w..16w+15 and keeps
//     their dK and dV as wmma accumulators over every query tile of the GQA group. Per query tile
//     the block forms S = Q K^T and dP = dO V^T (its 16 x 16 blocks shared out among the warps),
//     then P = exp(scale S - lse) and dS = P (dP - D), both rounded to bf16, then
//     dV_w += P^T dO and dK_w += dS^T Q (the transposes are column-major reads of P and dS).
//   dQ: a block per (64-row query tile, batch and kv head); warp w owns 16 rows and walks the
//     visible key tiles: S_w, dP_w, dS_w as above, dQ_w += dS_w K.
// Results go through shared memory (a fragment's layout is opaque) to global memory, dK and dQ
// times the softmax scale.
#pragma once

#include "backend/cuda/attention_backward_kernels.cuh"
#include "backend/cuda/attention_tc_blocks.cuh"

namespace opd::backend::cuda::attn {
inline namespace OPD_ATTN_KERNEL_NS {
namespace tc {

// P and dS of score (i, j) of a tile from S, dP and the row's visibility, lse and D; p
// unrounded for dS, both rounded for the products.
struct ProbGrad {
  bf16 p, ds;
};
__device__ __forceinline__ ProbGrad prob_grad(float score, float dp, bool visible, float scale,
                                              float lse, float d) {
  const float p = visible ? prob_from_lse(score * scale, lse) : 0.0f;
  return {__float2bfloat16_rn(p), __float2bfloat16_rn(p * (dp - d))};
}

// Writes the warp's 16 x kE accumulators (through its 16 rows of `stage`, pitch f32_pitch(kE))
// to dst_row(i)[e] * factor for rows i < rows, e < E.
template <int kE, class DstRow>
__device__ __forceinline__ void store_rows(const Acc (&acc)[kE / 16], float* stage, int rows,
                                           int E, float factor, DstRow dst_row) {
  constexpr int kP = f32_pitch(kE);
#pragma unroll
  for (int n = 0; n < kE / 16; ++n)
    wmma::store_matrix_sync(stage + 16 * n, acc[n], kP, wmma::mem_row_major);
  __syncwarp();
  const HalfRow me(static_cast<int>(threadIdx.x) % 32);
  if (me.row < rows) {
    float* dst = dst_row(me.row);
    const int e0 = me.begin<kE>(), e1 = min(e0 + kE / 2, E);
    for (int e = e0; e < e1; ++e) dst[e] = stage[me.row * kP + e] * factor;
  }
  __syncwarp();
}

// Shared memory of dK/dV, byte offsets: K, V [kBc], Q, dO [kBr] (bf16, kE columns), S, dP
// [kBr] x kBc (f32), P, dS [kBr] x kBc (bf16), per-row visibility, lse, D. At the end the
// region from kQ on stages the results ([kBc] x kE f32).
template <int kE, int kBr, int kBc>
struct DkdvSmemTc {
  static constexpr std::size_t kK = 0;
  static constexpr std::size_t kV = kK + bf16_tile(kBc, kE);
  static constexpr std::size_t kQ = kV + bf16_tile(kBc, kE);
  static constexpr std::size_t kDO = kQ + bf16_tile(kBr, kE);
  static constexpr std::size_t kS = kDO + bf16_tile(kBr, kE);
  static constexpr std::size_t kDP = kS + f32_tile(kBr, kBc);
  static constexpr std::size_t kP = kDP + f32_tile(kBr, kBc);
  static constexpr std::size_t kDS = kP + bf16_tile(kBr, kBc);
  static constexpr std::size_t kVis = kDS + bf16_tile(kBr, kBc);
  static constexpr std::size_t kLse = kVis + round_up(kBr * sizeof(int));
  static constexpr std::size_t kD = kLse + round_up(kBr * sizeof(float));
  static constexpr std::size_t kBytes = kD + round_up(kBr * sizeof(float));
  static_assert(kQ + f32_tile(kBc, kE) <= kVis, "the result stage fits before the row stats");
};

template <int kE, int kBr, int kBc>
__global__ void __launch_bounds__(kThreads) flash_dkdv_tc(BwdArgs a) {
#if OPD_TC_ARCH
  static_assert(kBc == 16 * kWarps && kBr % 16 == 0 && kE % 32 == 0, "tile shapes");
  using L = DkdvSmemTc<kE, kBr, kBc>;
  constexpr int kQP = bf16_pitch(kE), kSP = f32_pitch(kBc), kPP = bf16_pitch(kBc);
  constexpr int kBlocksC = kBc / 16, kBlocks = (kBr / 16) * kBlocksC;
  OPD_TC_SMEM(tc_smem);
  bf16* ks = at<bf16>(tc_smem, L::kK);
  bf16* vs = at<bf16>(tc_smem, L::kV);
  bf16* qs = at<bf16>(tc_smem, L::kQ);
  bf16* dos = at<bf16>(tc_smem, L::kDO);
  float* ss = at<float>(tc_smem, L::kS);
  float* dps = at<float>(tc_smem, L::kDP);
  bf16* ps = at<bf16>(tc_smem, L::kP);
  bf16* dss = at<bf16>(tc_smem, L::kDS);
  int* vis_s = at<int>(tc_smem, L::kVis);
  float* lse_s = at<float>(tc_smem, L::kLse);
  float* d_s = at<float>(tc_smem, L::kD);

  const Shape& s = a.s;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int b = blockIdx.y / s.G, g = blockIdx.y % s.G;
  const int j0 = blockIdx.x * kBc;
  const int keys = min(kBc, s.S - j0);
  load_tile_bf16<kBc, kE>(ks, keys, s.E, KeyRows{a.k, s, b, g, j0});
  load_tile_bf16<kBc, kE>(vs, keys, s.E, KeyRows{a.v, s, b, g, j0});

  Acc dk[kE / 16], dv[kE / 16];  // keys 16 warp .. 16 warp + 15
#pragma unroll
  for (int n = 0; n < kE / 16; ++n) {
    wmma::fill_fragment(dk[n], 0.0f);
    wmma::fill_fragment(dv[n], 0.0f);
  }

  const int total_rows = s.rows();
  for (int n0 = 0; n0 < total_rows; n0 += kBr) {
    const int rows = min(kBr, total_rows - n0);
    __syncthreads();  // the previous tile's reads of the row stats, Q, dO, P and dS are done
    bool sees = false;
    if (threadIdx.x < kBr)
      sees = load_row_stats(a, b, g, n0, rows, threadIdx.x, vis_s, lse_s, d_s, j0);
    if (!__syncthreads_or(sees)) continue;  // no row of this tile sees a key of this block
    load_tile_bf16<kBr, kE>(qs, rows, s.E, QueryRows{a.q, s, b, g, n0});
    load_tile_bf16<kBr, kE>(dos, rows, s.E, QueryRows{a.d_out, s, b, g, n0});
    __syncthreads();
    // S = Q K^T and dP = dO V^T, block (rb, cb) by warp (rb kBlocksC + cb) % kWarps.
    for (int blk = warp; blk < kBlocks; blk += kWarps) {
      const int rb = blk / kBlocksC, cb = blk % kBlocksC;
      Acc acc;
      wmma::fill_fragment(acc, 0.0f);
      mma_row<kE / 16, wmma::row_major, wmma::col_major>(acc, qs + 16 * rb * kQP, kQP, ks, kQP, cb);
      wmma::store_matrix_sync(ss + 16 * rb * kSP + 16 * cb, acc, kSP, wmma::mem_row_major);
      wmma::fill_fragment(acc, 0.0f);
      mma_row<kE / 16, wmma::row_major, wmma::col_major>(acc, dos + 16 * rb * kQP, kQP, vs, kQP,
                                                         cb);
      wmma::store_matrix_sync(dps + 16 * rb * kSP + 16 * cb, acc, kSP, wmma::mem_row_major);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kBr * kBc; idx += kThreads) {
      const int i = idx / kBc, c = idx % kBc;
      const ProbGrad pg = prob_grad(ss[i * kSP + c], dps[i * kSP + c], j0 + c < vis_s[i], a.scale,
                                    lse_s[i], d_s[i]);
      ps[i * kPP + c] = pg.p;
      dss[i * kPP + c] = pg.ds;
    }
    __syncthreads();
    // dV_w += P^T dO and dK_w += dS^T Q: the warp's keys are columns 16 warp.. of P and dS.
#pragma unroll
    for (int n = 0; n < kE / 16; ++n) {
      mma_row<kBr / 16, wmma::col_major, wmma::row_major>(dv[n], ps + 16 * warp, kPP, dos, kQP, n);
      mma_row<kBr / 16, wmma::col_major, wmma::row_major>(dk[n], dss + 16 * warp, kPP, qs, kQP, n);
    }
  }

  // Every key of [0, S) belongs to one block: dK and dV are overwritten, 0 for unseen keys.
  __syncthreads();  // the stage overlays Q, dO, S, ...
  float* stage = at<float>(tc_smem, L::kQ) + 16 * warp * f32_pitch(kE);
  const int my_keys = min(16, keys - 16 * warp);
  auto key_row = [&](float* base) {
    return [=](int i) { return base + kv_offset(s, b, j0 + 16 * warp + i, g); };
  };
  store_rows<kE>(dk, stage, my_keys, s.E, a.scale, key_row(a.dk));
  store_rows<kE>(dv, stage, my_keys, s.E, 1.0f, key_row(a.dv));
#else
  __trap();
#endif
}

// Shared memory of dQ, byte offsets: Q, dO [kBr], K, V [kBc] (bf16, kE columns), S, dP [kBr] x
// kBc (f32), dS [kBr] x kBc (bf16), per-row visibility, lse, D, the tile's key count. At the end
// the region from kQ on stages the results ([kBr] x kE f32).
template <int kE, int kBr, int kBc>
struct DqSmemTc {
  static constexpr std::size_t kQ = 0;
  static constexpr std::size_t kDO = kQ + bf16_tile(kBr, kE);
  static constexpr std::size_t kK = kDO + bf16_tile(kBr, kE);
  static constexpr std::size_t kV = kK + bf16_tile(kBc, kE);
  static constexpr std::size_t kS = kV + bf16_tile(kBc, kE);
  static constexpr std::size_t kDP = kS + f32_tile(kBr, kBc);
  static constexpr std::size_t kDS = kDP + f32_tile(kBr, kBc);
  static constexpr std::size_t kVis = kDS + bf16_tile(kBr, kBc);
  static constexpr std::size_t kLse = kVis + round_up(kBr * sizeof(int));
  static constexpr std::size_t kD = kLse + round_up(kBr * sizeof(float));
  static constexpr std::size_t kEnd = kD + round_up(kBr * sizeof(float));
  static constexpr std::size_t kBytes = kEnd + 128;
  static_assert(kQ + f32_tile(kBr, kE) <= kVis, "the result stage fits before the row stats");
};

template <int kE, int kBr, int kBc>
__global__ void __launch_bounds__(kThreads) flash_dq_tc(BwdArgs a) {
#if OPD_TC_ARCH
  static_assert(kBr == 16 * kWarps && kBc % 32 == 0 && kE % 32 == 0, "tile shapes");
  using L = DqSmemTc<kE, kBr, kBc>;
  constexpr int kQP = bf16_pitch(kE), kSP = f32_pitch(kBc), kPP = bf16_pitch(kBc);
  OPD_TC_SMEM(tc_smem);
  bf16* qs = at<bf16>(tc_smem, L::kQ);
  bf16* dos = at<bf16>(tc_smem, L::kDO);
  bf16* ks = at<bf16>(tc_smem, L::kK);
  bf16* vs = at<bf16>(tc_smem, L::kV);
  float* ss = at<float>(tc_smem, L::kS);
  float* dps = at<float>(tc_smem, L::kDP);
  bf16* dss = at<bf16>(tc_smem, L::kDS);
  int* vis_s = at<int>(tc_smem, L::kVis);
  float* lse_s = at<float>(tc_smem, L::kLse);
  float* d_s = at<float>(tc_smem, L::kD);
  int* kv_end_s = at<int>(tc_smem, L::kEnd);

  const Shape& s = a.s;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const HalfRow me(static_cast<int>(threadIdx.x) % 32);
  const int b = blockIdx.y / s.G, g = blockIdx.y % s.G;
  const int n0 = blockIdx.x * kBr;
  const int rows = min(kBr, s.rows() - n0);
  if (threadIdx.x == 0) *kv_end_s = 0;
  __syncthreads();
  if (threadIdx.x < kBr) {
    load_row_stats(a, b, g, n0, rows, threadIdx.x, vis_s, lse_s, d_s, 0);
    atomicMax(kv_end_s, vis_s[threadIdx.x]);
  }
  load_tile_bf16<kBr, kE>(qs, rows, s.E, QueryRows{a.q, s, b, g, n0});
  load_tile_bf16<kBr, kE>(dos, rows, s.E, QueryRows{a.d_out, s, b, g, n0});
  __syncthreads();
  const int tiles = ceil_div(*kv_end_s, kBc);

  const bf16* q_w = qs + 16 * warp * kQP;
  const bf16* do_w = dos + 16 * warp * kQP;
  float* s_w = ss + 16 * warp * kSP;
  float* dp_w = dps + 16 * warp * kSP;
  bf16* ds_w = dss + 16 * warp * kPP;
  const int row = 16 * warp + me.row;
  const int vis = vis_s[row];
  const float row_lse = lse_s[row], row_d = d_s[row];
  Acc dq[kE / 16];
#pragma unroll
  for (int n = 0; n < kE / 16; ++n) wmma::fill_fragment(dq[n], 0.0f);

  for (int kt = 0; kt < tiles; ++kt) {
    const int j0 = kt * kBc;
    const int keys = min(kBc, s.S - j0);
    __syncthreads();  // every warp is done with the previous K and V
    load_tile_bf16<kBc, kE>(ks, keys, s.E, KeyRows{a.k, s, b, g, j0});
    load_tile_bf16<kBc, kE>(vs, keys, s.E, KeyRows{a.v, s, b, g, j0});
    __syncthreads();
    warp_gemm<kBc / 16, kE / 16, wmma::row_major, wmma::col_major, false>(s_w, kSP, q_w, kQP, ks,
                                                                          kQP);  // Q K^T
    warp_gemm<kBc / 16, kE / 16, wmma::row_major, wmma::col_major, false>(dp_w, kSP, do_w, kQP, vs,
                                                                          kQP);  // dO V^T
    __syncwarp();
    const int c0 = me.begin<kBc>();
    for (int c = c0; c < c0 + kBc / 2; ++c)
      ds_w[me.row * kPP + c] = prob_grad(s_w[me.row * kSP + c], dp_w[me.row * kSP + c],
                                         j0 + c < vis, a.scale, row_lse, row_d)
                                   .ds;
    __syncwarp();
#pragma unroll
    for (int n = 0; n < kE / 16; ++n)
      mma_row<kBc / 16, wmma::row_major, wmma::row_major>(dq[n], ds_w, kPP, ks, kQP, n);  // dS K
  }

  __syncthreads();  // the stage overlays Q, dO, K, ...
  float* stage = at<float>(tc_smem, L::kQ) + 16 * warp * f32_pitch(kE);
  store_rows<kE>(dq, stage, min(16, rows - 16 * warp), s.E, a.scale, [&](int i) {
    const Row r = row_of(s, g, n0 + 16 * warp + i);
    return a.dq + q_offset(s, b, r.t, r.h);
  });
#else
  __trap();
#endif
}

}  // namespace tc
}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::attn
