// Dispatch on device (DESIGN.md §2) for the dense ops: elementwise, GEMM, embedding, norms,
// RoPE, SwiGLU, attention, AdamW. CUDA tensors go to backend/cuda.
#include "backend/ops.hpp"

#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/cuda_ops.hpp"
#endif

namespace opd::backend {

void fill(Tensor& x, float value) {
  OPD_ON_CUDA("fill", x, fill(x, value));
  cpu::fill(x, value);
}

void copy(const Tensor& src, Tensor& dst) {
  OPD_ON_CUDA_STAGED("copy", src.is_host() ? dst : src, copy(src, dst));
  cpu::copy(src, dst);
}

Tensor on_device(const Tensor& x, core::Device device) {
  if (!x.defined() || x.device() == device) return x;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  copy(x, out);
  return out;
}

void cast(const Tensor& src, Tensor& dst) {
  OPD_ON_CUDA("cast", src, cast(src, dst));
  cpu::cast(src, dst);
}

void scale(Tensor& x, float alpha) {
  OPD_ON_CUDA("scale", x, scale(x, alpha));
  cpu::scale(x, alpha);
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  OPD_ON_CUDA("axpy", x, axpy(alpha, x, y));
  cpu::axpy(alpha, x, y);
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  OPD_ON_CUDA("add", a, add(a, b, out));
  cpu::add(a, b, out);
}

void add_bias(Tensor& x, const Tensor& bias) {
  OPD_ON_CUDA("add_bias", x, add_bias(x, bias));
  cpu::add_bias(x, bias);
}

void bias_backward(const Tensor& dy, Tensor& dbias) {
  OPD_ON_CUDA("bias_backward", dy, bias_backward(dy, dbias));
  cpu::bias_backward(dy, dbias);
}

double sum_squares(const Tensor& x) {
  OPD_ON_CUDA("sum_squares", x, sum_squares(x));
  return cpu::sum_squares(x);
}

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
          float alpha, float beta) {
  OPD_ON_CUDA("gemm", a, gemm(a, trans_a, b, trans_b, c, alpha, beta));
  cpu::gemm(a, trans_a, b, trans_b, c, alpha, beta);
}

void gemm_residual(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   const Tensor& residual, Tensor& out, Tensor& scratch) {
  OPD_ON_CUDA("gemm_residual", a, gemm_residual(a, trans_a, b, trans_b, residual, out));
  cpu::gemm(a, trans_a, b, trans_b, scratch, 1.0f, 0.0f);
  cpu::add(residual, scratch, out);
}

void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta) {
  OPD_ON_CUDA("gemm_batched", a, gemm_batched(a, trans_a, b, trans_b, c, alpha, beta));
  cpu::gemm_batched(a, trans_a, b, trans_b, c, alpha, beta);
}

void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out,
                       const VocabRange& range) {
  OPD_ON_CUDA("embedding_forward", table, embedding_forward(table, ids, out, range));
  cpu::embedding_forward(table, ids, out, range);
}

void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range) {
  OPD_ON_CUDA("embedding_backward", d_out, embedding_backward(d_out, ids, d_table, range));
  cpu::embedding_backward(d_out, ids, d_table, range);
}

void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd) {
  OPD_ON_CUDA("rmsnorm_forward", x, rmsnorm_forward(x, w, eps, y, rstd));
  cpu::rmsnorm_forward(x, w, eps, y, rstd);
}

void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw) {
  OPD_ON_CUDA("rmsnorm_backward", x, rmsnorm_backward(x, w, rstd, dy, dx, dw));
  cpu::rmsnorm_backward(x, w, rstd, dy, dx, dw);
}

void rope_forward(Tensor& x, const Tensor& pos, float theta) {
  OPD_ON_CUDA("rope_forward", x, rope_forward(x, pos, theta));
  cpu::rope_forward(x, pos, theta);
}

void rope_backward(Tensor& dx, const Tensor& pos, float theta) {
  OPD_ON_CUDA("rope_backward", dx, rope_backward(dx, pos, theta));
  cpu::rope_backward(dx, pos, theta);
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  OPD_ON_CUDA("swiglu_forward", gate, swiglu_forward(gate, up, out));
  cpu::swiglu_forward(gate, up, out);
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up) {
  OPD_ON_CUDA("swiglu_backward", gate, swiglu_backward(gate, up, d_out, d_gate, d_up));
  cpu::swiglu_backward(gate, up, d_out, d_gate, d_up);
}

namespace {

void check_operands(const char* op, core::DType operands) {
  OPD_CHECK(operands == core::DType::F32 || operands == core::DType::BF16, op,
            ": attention operands must be f32 or bf16, got ", core::dtype_name(operands));
}

// x rounded to bf16 and widened again: the CPU's bf16 attention operands (ops.hpp).
Tensor bf16_rounded(const Tensor& x) {
  Tensor half = Tensor::empty(x.shape(), core::DType::BF16, x.device());
  cpu::cast(x, half);
  Tensor wide = Tensor::empty(x.shape(), core::DType::F32, x.device());
  cpu::cast(half, wide);
  return wide;
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse,
                       core::DType operands) {
  check_operands("attention_forward", operands);
  OPD_ON_CUDA("attention_forward", q,
              attention_forward(q, k, v, q_pos, scale, out, probs, lse, operands));
  if (operands == core::DType::BF16)
    cpu::attention_forward(bf16_rounded(q), bf16_rounded(k), bf16_rounded(v), q_pos, scale, out,
                           probs, lse);
  else
    cpu::attention_forward(q, k, v, q_pos, scale, out, probs, lse);
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  OPD_ON_CUDA("attention_backward", q, attention_backward(q, k, v, probs, d_out, scale, dq, dk, dv));
  cpu::attention_backward(q, k, v, probs, d_out, scale, dq, dk, dv);
}

void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv,
                                 core::DType operands) {
  check_operands("attention_backward_from_lse", operands);
  OPD_ON_CUDA("attention_backward_from_lse", q,
              attention_backward_from_lse(q, k, v, q_pos, lse, d_out, scale, dq, dk, dv, operands));
  if (operands == core::DType::BF16)
    cpu::attention_backward_from_lse(bf16_rounded(q), bf16_rounded(k), bf16_rounded(v), q_pos, lse,
                                     bf16_rounded(d_out), scale, dq, dk, dv);
  else
    cpu::attention_backward_from_lse(q, k, v, q_pos, lse, d_out, scale, dq, dk, dv);
}

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp) {
  OPD_ON_CUDA("adamw_step", param, adamw_step(param, grad, m, v, hp));
  cpu::adamw_step(param, grad, m, v, hp);
}

}  // namespace opd::backend
