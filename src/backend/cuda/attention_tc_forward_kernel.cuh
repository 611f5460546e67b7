// The bf16 tensor-core flash attention forward (launched by attention_forward.cu): the same
// blocks, key splits and delta form as the f32 kernel (attention_forward_kernel.cuh), with
// S = Q K^T and O += P V on tensor cores. Each of the 4 warps owns 16 of the block's 64 query
// rows; only K/V tile loads need the whole block, the rest is warp-local.
//
// Per key tile, warp w: S (f32, shared) = Q_w K^T; its lanes mask and scale S, fold the tile's
// row maxima into the online softmax, write P = bf16(exp(S - m)) and rescale the warp's rows of
// O (f32, shared); then O_w += P_w V. Row sums add the rounded P, the weights O really got.
#pragma once

#include "backend/cuda/attention_tc_blocks.cuh"

namespace opd::backend::cuda::attn {
inline namespace OPD_ATTN_KERNEL_NS {
namespace tc {

// Shared memory of the forward, byte offsets: Q [kBr], K, V [kBc] (bf16, kE columns), S [kBr]
// x kBc (f32), P [kBr] x kBc (bf16), O [kBr] x kE (f32), per-row visible keys and lse, the
// tile's key count.
template <int kE, int kBr, int kBc>
struct FwdSmem {
  static constexpr std::size_t kQ = 0;
  static constexpr std::size_t kK = kQ + bf16_tile(kBr, kE);
  static constexpr std::size_t kV = kK + bf16_tile(kBc, kE);
  static constexpr std::size_t kS = kV + bf16_tile(kBc, kE);
  static constexpr std::size_t kP = kS + f32_tile(kBr, kBc);
  static constexpr std::size_t kO = kP + bf16_tile(kBr, kBc);
  static constexpr std::size_t kVis = kO + f32_tile(kBr, kE);
  static constexpr std::size_t kLse = kVis + round_up(kBr * sizeof(int));
  static constexpr std::size_t kEnd = kLse + round_up(kBr * sizeof(float));
  static constexpr std::size_t kBytes = kEnd + 128;
};

template <int kE, int kBr, int kBc, bool kDelta>
__global__ void __launch_bounds__(kThreads) flash_forward_tc(FwdArgs a) {
#if OPD_TC_ARCH
  static_assert(kBr == 16 * kWarps && kBc % 32 == 0 && kE % 32 == 0, "tile shapes");
  using L = FwdSmem<kE, kBr, kBc>;
  constexpr int kQP = bf16_pitch(kE), kSP = f32_pitch(kBc), kPP = bf16_pitch(kBc),
                kOP = f32_pitch(kE);
  OPD_TC_SMEM(tc_smem);
  bf16* qs = at<bf16>(tc_smem, L::kQ);
  bf16* ks = at<bf16>(tc_smem, L::kK);
  bf16* vs = at<bf16>(tc_smem, L::kV);
  float* ss = at<float>(tc_smem, L::kS);
  bf16* ps = at<bf16>(tc_smem, L::kP);
  float* os = at<float>(tc_smem, L::kO);
  int* vis_s = at<int>(tc_smem, L::kVis);
  float* lse_s = at<float>(tc_smem, L::kLse);
  int* kv_end_s = at<int>(tc_smem, L::kEnd);

  const Shape& s = a.s;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const HalfRow me(static_cast<int>(threadIdx.x) % 32);
  const int b = blockIdx.y / s.G, g = blockIdx.y % s.G;
  const int n0 = blockIdx.x * kBr;
  const int rows = min(kBr, s.rows() - n0);

  if (threadIdx.x == 0) *kv_end_s = 0;
  for (int idx = threadIdx.x; idx < kBr * kE; idx += kThreads) os[(idx / kE) * kOP + idx % kE] = 0.0f;
  __syncthreads();
  forward_row_stats<kBr, kDelta>(a, b, g, n0, rows, vis_s, lse_s, kv_end_s);
  load_tile_bf16<kBr, kE>(qs, rows, s.E, QueryRows{a.q, s, b, g, n0});
  __syncthreads();
  const TileRange range = split_tiles(*kv_end_s, kBc, a.max_tiles, a.splits, blockIdx.z);

  // The warp's rows of Q, S, P, O; this lane's row of the block.
  const bf16* q_w = qs + 16 * warp * kQP;
  float* s_w = ss + 16 * warp * kSP;
  bf16* p_w = ps + 16 * warp * kPP;
  float* o_w = os + 16 * warp * kOP;
  const int row = 16 * warp + me.row;
  const int vis = vis_s[row];
  const float row_lse = lse_s[row];
  OnlineSoftmax sm;  // the same in both lanes of the row; sm.l is the row's whole sum

  for (int kt = range.begin; kt < range.end; ++kt) {
    const int j0 = kt * kBc;
    const int keys = min(kBc, s.S - j0);
    __syncthreads();  // every warp is done with the previous K and V
    load_tile_bf16<kBc, kE>(ks, keys, s.E, KeyRows{a.k, s, b, g, j0});
    load_tile_bf16<kBc, kE>(vs, keys, s.E, KeyRows{a.v, s, b, g, j0});
    __syncthreads();
    warp_gemm<kBc / 16, kE / 16, wmma::row_major, wmma::col_major, false>(s_w, kSP, q_w, kQP, ks,
                                                                          kQP);  // Q K^T
    __syncwarp();
    const int c0 = me.begin<kBc>();
    float* srow = s_w + me.row * kSP + c0;
    bf16* prow = p_w + me.row * kPP + c0;
    if constexpr (kDelta) {
      for (int c = 0; c < kBc / 2; ++c)
        prow[c] = __float2bfloat16_rn(
            j0 + c0 + c < vis ? prob_from_lse(srow[c] * a.scale, row_lse) : 0.0f);
    } else {
      float mx = -INFINITY;
      for (int c = 0; c < kBc / 2; ++c) {
        const float x = j0 + c0 + c < vis ? srow[c] * a.scale : -INFINITY;
        srow[c] = x;
        mx = fmaxf(mx, x);
      }
      const float alpha = sm.rescale(pair_max(mx));
      float sum = 0.0f;
      for (int c = 0; c < kBc / 2; ++c) {
        const bf16 p = __float2bfloat16_rn(sm.prob(srow[c]));
        prow[c] = p;
        sum += __bfloat162float(p);
      }
      sm.l += pair_sum(sum);
      float* orow = o_w + me.row * kOP + me.begin<kE>();
      for (int e = 0; e < kE / 2; ++e) orow[e] *= alpha;
    }
    __syncwarp();
    warp_gemm<kE / 16, kBc / 16, wmma::row_major, wmma::row_major, true>(o_w, kOP, p_w, kPP, vs,
                                                                         kQP);  // O += P V
  }
  __syncwarp();

  const bool valid = row < rows;
  const Row r = row_of(s, g, n0 + row);
  const float* orow = o_w + me.row * kOP;
  const int e0 = me.begin<kE>(), e1 = min(e0 + kE / 2, s.E);
  if constexpr (kDelta) {
    // O is already normalised (P from the lse): D = dO . O, dO rounded like every operand.
    float part = 0.0f;
    if (valid) {
      const Elem* go = a.d_out + q_offset(s, b, r.t, r.h);
      for (int e = e0; e < e1; ++e)
        part += orow[e] * __bfloat162float(__float2bfloat16_rn(load(go + e)));
    }
    const float d = pair_sum(part);
    if (valid && me.half == 0) a.delta[lse_offset(s, b, r.h, r.t)] = d;
  } else if (valid) {
    const float inv = sm.l > 0.0f ? 1.0f / sm.l : 0.0f;
    float* o = a.out + blockIdx.z * a.out_split_stride + q_offset(s, b, r.t, r.h);
    for (int e = e0; e < e1; ++e) o[e] = orow[e] * inv;
    if (a.lse && me.half == 0)
      a.lse[blockIdx.z * a.lse_split_stride + lse_offset(s, b, r.h, r.t)] = sm.lse(sm.l);
  }
#else
  __trap();
#endif
}

}  // namespace tc
}  // namespace OPD_ATTN_KERNEL_NS
}  // namespace opd::backend::cuda::attn
