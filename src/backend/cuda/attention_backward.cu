// CUDA attention backward (backend/ops.hpp contract). From the lse, FlashAttention-2 style and
// deterministic (no atomics), P recomputed tile by tile as exp(scale q.k - lse):
//   1. D_i = dO_i . O_i with O_i = sum_j P_ij v_j (the forward kernel's delta form), since the op
//      is not given the forward's output;
//   2. a block per (key tile, batch and kv head) keeps its K and V tiles in shared memory and
//      accumulates dK and dV in registers over every query tile of all heads of the GQA group:
//      dV_j = sum_i P_ij dO_i, dK_j = scale sum_i dS_ij q_i, dS_ij = P_ij (dO_i . v_j - D_i);
//      query tiles whose rows see none of the block's keys are skipped;
//   3. a block per (query tile, batch and kv head) walks its visible key tiles for
//      dQ_i = scale sum_j dS_ij k_j.
// With bf16 operands, where attention_common.cuh's tensor_cores_for allows, the same three passes
// run on tensor cores (attention_tc_forward_kernel.cuh, attention_tc_backward_kernels.cuh).
// From P (the probs variant): the simple kernel of attention_probs.cu.
#include "backend/cuda/attention_backward_kernels.cuh"
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/attention_tc_backward_kernels.cuh"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace attn {

namespace {

template <int kE>
void backward_kernels(const BwdArgs& a) {
  using C = Config<kE>;
  const unsigned groups = static_cast<unsigned>(a.s.B * a.s.G);
  if (a.s.S > 0) {
    auto kernel = flash_dkdv<kE, C::kBwdBr, C::kBwdBc>;
    constexpr std::size_t bytes = DkdvSmem<kE, C::kBwdBr, C::kBwdBc>::kBytes;
    allow_shared(kernel, bytes, "attention backward (flash dK dV)");
    kernel<<<dim3(static_cast<unsigned>(ceil_div(a.s.S, C::kBwdBc)), groups), kThreads, bytes, stream()>>>(a);
    check_launch("attention backward (flash dK dV)");
  }
  if (a.s.rows() > 0) {
    auto kernel = flash_dq<kE, C::kDqBr, C::kDqBc>;
    constexpr std::size_t bytes = DqSmem<kE, C::kDqBr, C::kDqBc>::kBytes;
    allow_shared(kernel, bytes, "attention backward (flash dQ)");
    kernel<<<dim3(static_cast<unsigned>(ceil_div(a.s.rows(), C::kDqBr)), groups), kThreads,
             bytes, stream()>>>(a);
    check_launch("attention backward (flash dQ)");
  }
}

template <int kE>
void backward_kernels_tc(const BwdArgs& a) {
  using C = tc::Config<kE>;
  const unsigned groups = static_cast<unsigned>(a.s.B * a.s.G);
  if (a.s.S > 0) {
    auto kernel = tc::flash_dkdv_tc<kE, C::kDkdvBr, C::kDkdvBc>;
    constexpr std::size_t bytes = tc::DkdvSmemTc<kE, C::kDkdvBr, C::kDkdvBc>::kBytes;
    allow_shared(kernel, bytes, "attention backward (flash dK dV, bf16)");
    kernel<<<dim3(static_cast<unsigned>(ceil_div(a.s.S, C::kDkdvBc)), groups), tc::kThreads,
             bytes, stream()>>>(a);
    check_launch("attention backward (flash dK dV, bf16)");
  }
  if (a.s.rows() > 0) {
    auto kernel = tc::flash_dq_tc<kE, C::kDqBr, C::kDqBc>;
    constexpr std::size_t bytes = tc::DqSmemTc<kE, C::kDqBr, C::kDqBc>::kBytes;
    allow_shared(kernel, bytes, "attention backward (flash dQ, bf16)");
    kernel<<<dim3(static_cast<unsigned>(ceil_div(a.s.rows(), C::kDqBr)), groups), tc::kThreads,
             bytes, stream()>>>(a);
    check_launch("attention backward (flash dQ, bf16)");
  }
}

void check_grads(const char* op, const Tensor& q, const Tensor& k, const Tensor& d_out,
                 const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  require_device(op, "d_out", d_out, kElemType);
  require_device(op, "dq", dq);
  require_device(op, "dk", dk);
  require_device(op, "dv", dv);
  OPD_CHECK(d_out.shape() == q.shape() && dq.shape() == q.shape() && dk.shape() == k.shape() &&
                dv.shape() == k.shape(),
            op, ": d_out ", d_out.describe(), " dq ", dq.describe(), " dk ", dk.describe(), " dv ",
            dv.describe());
}

}  // namespace

}  // namespace attn

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const char* op = "attention_backward";
  const attn::Shape s = attn::check_shapes(op, q, k, v);
  require_device(op, "probs", probs);
  OPD_CHECK(probs.shape() == core::Shape({s.B, s.H, s.T, s.S}), op, ": probs ", probs.describe());
  attn::check_grads(op, q, k, d_out, dq, dk, dv);
  attn::probs_backward(s, q, k, v, probs, d_out, scale, dq, dk, dv);
}

void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv,
                                 core::DType operands) {
  const char* op = "attention_backward_from_lse";
  const attn::Shape s = attn::check_shapes(op, q, k, v);
  require_device(op, "q_pos", q_pos, core::DType::I32);
  require_device(op, "lse", lse);
  OPD_CHECK(q_pos.numel() == int64_t(s.B) * s.T && lse.shape() == core::Shape({s.B, s.H, s.T}), op,
            ": q_pos ", q_pos.describe(), " lse ", lse.describe());
  attn::check_grads(op, q, k, d_out, dq, dk, dv);
  if (s.B == 0) return;
  const bool tc = attn::tensor_cores_for(s, operands);
  float* delta = nullptr;
  if (s.rows() > 0) {  // D = dO . O per query row
    delta = attn::workspace(static_cast<std::size_t>(int64_t(s.B) * s.H * s.T));
    attn::FwdArgs f{};
    f.q = q.data<attn::Elem>();
    f.k = k.data<attn::Elem>();
    f.v = v.data<attn::Elem>();
    f.q_pos = q_pos.data<int32_t>();
    f.lse_in = lse.data<float>();
    f.d_out = d_out.data<attn::Elem>();
    f.scale = scale;
    f.delta = delta;
    f.s = s;
    attn::flash_delta_run(f, tc);
  }
  const attn::BwdArgs a{q.data<attn::Elem>(),
                        k.data<attn::Elem>(),
                        v.data<attn::Elem>(),
                        d_out.data<attn::Elem>(),
                        q_pos.data<int32_t>(),
                        lse.data<float>(),
                        delta,
                        scale,
                        dq.data<float>(),
                        dk.data<float>(),
                        dv.data<float>(),
                        s};
  attn::with_head_dim(s.E, [&](auto bound) {
    constexpr int kE = decltype(bound)::value;
    if constexpr (kE <= attn::tc::kMaxHeadDim) {
      if (tc) {
        attn::backward_kernels_tc<kE>(a);
        return;
      }
    }
    attn::backward_kernels<kE>(a);
  });
}

}  // namespace opd::backend::cuda
