// CUDA attention forward (backend/ops.hpp contract), FlashAttention-2 style: a block per
// (tile of query rows, batch and kv head, key split) walks the key tiles its rows can see with an
// online softmax, K and V tiles in shared memory and fp32 accumulators in registers, so the
// T x S scores never exist. The rows of a tile are the query rows of all heads of a GQA group
// (attention_tiles.hpp), so a K/V tile serves the whole group.
//
// Decode steps and other launches too small to fill the device split the keys over blocks
// (flash-decoding): each split writes its normalised output and log-sum-exp, and a combine kernel
// weighs them by exp(lse_k - lse). The same kernel, in its "delta" form, is the backward's first
// pass (attention_backward.cu): P from the forward's lse, O = P V, D = dO . O per row.
// A forward that keeps P runs the simple kernel of attention_probs.cu. With bf16 operands
// (backend/ops.hpp) the tensor-core kernel of attention_tc_forward_kernel.cuh runs instead where
// the device and head size allow it (attention_common.cuh).
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/attention_forward_kernel.cuh"
#include "backend/cuda/attention_tc_forward_kernel.cuh"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace attn {

namespace {

template <class Kernel>
void launch_kernel(Kernel kernel, std::size_t bytes, int threads, const FwdArgs& a, int row_tiles,
            const char* what) {
  allow_shared(kernel, bytes, what);
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(a.s.B * a.s.G),
                  static_cast<unsigned>(a.splits));
  kernel<<<grid, threads, bytes, stream()>>>(a);
  check_launch(what);
}

// The f32 kernel, or the bf16 tensor-core one, with kBr x kBc tiles.
template <int kE, int kBr, int kBc, bool kDelta, bool kTensorCores>
void launch(const FwdArgs& a, int row_tiles, const char* what) {
  if constexpr (kTensorCores)
    launch_kernel(tc::flash_forward_tc<kE, kBr, kBc, kDelta>, tc::FwdSmem<kE, kBr, kBc>::kBytes,
                  tc::kThreads, a, row_tiles, what);
  else
    launch_kernel(flash_forward<kE, kBr, kBc, kDelta>, FwdSmem<kE, kBr, kBc>::kBytes, kThreads, a,
                  row_tiles, what);
}

template <int kE, int kBr, int kBc, bool kTensorCores>
void forward_tiles(FwdArgs a, float* out, float* lse) {
  const Shape& s = a.s;
  const int row_tiles = ceil_div(s.rows(), kBr);
  a.max_tiles = ceil_div(s.S, kBc);
  a.splits = plan_splits(int64_t(row_tiles) * s.B * s.G, a.max_tiles, sm_count());
  if (a.splits == 1) {
    a.out = out;
    a.lse = lse;
    launch<kE, kBr, kBc, false, kTensorCores>(a, row_tiles, "attention_forward (flash)");
    return;
  }
  const int64_t out_n = int64_t(s.B) * s.T * s.H * s.E, lse_n = int64_t(s.B) * s.H * s.T;
  float* ws = workspace(static_cast<std::size_t>(a.splits * (out_n + lse_n)));
  a.out = ws;
  a.lse = ws + a.splits * out_n;
  a.out_split_stride = out_n;
  a.lse_split_stride = lse_n;
  launch<kE, kBr, kBc, false, kTensorCores>(a, row_tiles, "attention_forward (flash, split keys)");
  combine_splits<<<blocks_for(out_n), cuda::kThreads, 0, stream()>>>(a.out, a.lse, a.splits, out_n, lse_n, s,
                                                        out, lse);
  check_launch("attention_forward (combine splits)");
}

}  // namespace

void flash_forward_run(const FwdArgs& args, float* out, float* lse, bool tensor_cores) {
  with_head_dim(args.s.E, [&](auto bound) {
    constexpr int kE = decltype(bound)::value;
    using C = Config<kE>;
    if constexpr (kE <= tc::kMaxHeadDim) {
      if (tensor_cores) {
        forward_tiles<kE, tc::Config<kE>::kFwdBr, tc::Config<kE>::kFwdBc, true>(args, out, lse);
        return;
      }
    }
    if (args.s.rows() <= kDecodeBr)
      forward_tiles<kE, kDecodeBr, C::kFwdBc, false>(args, out, lse);
    else
      forward_tiles<kE, C::kFwdBr, C::kFwdBc, false>(args, out, lse);
  });
}

void flash_delta_run(const FwdArgs& args, bool tensor_cores) {
  with_head_dim(args.s.E, [&](auto bound) {
    constexpr int kE = decltype(bound)::value;
    FwdArgs a = args;
    a.splits = 1;
    if constexpr (kE <= tc::kMaxHeadDim) {
      if (tensor_cores) {
        using C = tc::Config<kE>;
        a.max_tiles = ceil_div(a.s.S, C::kFwdBc);
        launch<kE, C::kFwdBr, C::kFwdBc, true, true>(a, ceil_div(a.s.rows(), C::kFwdBr),
                                                     "attention backward (flash D pass, bf16)");
        return;
      }
    }
    using C = Config<kE>;
    a.max_tiles = ceil_div(a.s.S, C::kFwdBc);
    launch<kE, C::kFwdBr, C::kFwdBc, true, false>(a, ceil_div(a.s.rows(), C::kFwdBr),
                                                  "attention backward (flash D pass)");
  });
}

}  // namespace attn

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse,
                       core::DType operands) {
  const char* op = "attention_forward";
  const attn::Shape s = attn::check_shapes(op, q, k, v);
  require_device(op, "q_pos", q_pos, core::DType::I32);
  require_device(op, "out", out);
  OPD_CHECK(q_pos.numel() == int64_t(s.B) * s.T && out.shape() == q.shape(), op, ": q_pos ",
            q_pos.describe(), " out ", out.describe());
  if (probs) {
    require_device(op, "probs", *probs);
    OPD_CHECK(probs->shape() == core::Shape({s.B, s.H, s.T, s.S}), op, ": probs ",
              probs->describe());
  }
  if (lse) {
    require_device(op, "lse", *lse);
    OPD_CHECK(lse->shape() == core::Shape({s.B, s.H, s.T}), op, ": lse ", lse->describe());
  }
  if (int64_t(s.B) * s.T * s.H == 0) return;
  if (probs) {
    attn::probs_forward(s, q, k, v, q_pos, scale, out, *probs, lse);
    return;
  }
  attn::FwdArgs a{};
  a.q = q.data<attn::Elem>();
  a.k = k.data<attn::Elem>();
  a.v = v.data<attn::Elem>();
  a.q_pos = q_pos.data<int32_t>();
  a.scale = scale;
  a.s = s;
  // A decode step (a few rows per kv head) keeps the f32 kernel and its key splits: it is bound
  // by reading K and V, and a 64-row tensor-core tile would be mostly padding.
  const bool tc = attn::tensor_cores_for(s, operands) && s.rows() > attn::kDecodeBr;
  attn::flash_forward_run(a, out.data<float>(), lse ? lse->data<float>() : nullptr, tc);
}

}  // namespace opd::backend::cuda
