// Dispatch on device (DESIGN.md §2) for the dense ops: elementwise, GEMM, embedding, norms,
// RoPE, SwiGLU, attention, AdamW.
#include "backend/ops.hpp"

#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"

namespace opd::backend {

void fill(Tensor& x, float value) {
  require_host("fill", x);
  cpu::fill(x, value);
}

void copy(const Tensor& src, Tensor& dst) {
  require_host("copy", src);
  cpu::copy(src, dst);
}

void scale(Tensor& x, float alpha) {
  require_host("scale", x);
  cpu::scale(x, alpha);
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  require_host("axpy", x);
  cpu::axpy(alpha, x, y);
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  require_host("add", a);
  cpu::add(a, b, out);
}

void add_bias(Tensor& x, const Tensor& bias) {
  require_host("add_bias", x);
  cpu::add_bias(x, bias);
}

void bias_backward(const Tensor& dy, Tensor& dbias) {
  require_host("bias_backward", dy);
  cpu::bias_backward(dy, dbias);
}

double sum_squares(const Tensor& x) {
  require_host("sum_squares", x);
  return cpu::sum_squares(x);
}

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
          float alpha, float beta) {
  require_host("gemm", a);
  cpu::gemm(a, trans_a, b, trans_b, c, alpha, beta);
}

void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta) {
  require_host("gemm_batched", a);
  cpu::gemm_batched(a, trans_a, b, trans_b, c, alpha, beta);
}

void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out,
                       const VocabRange& range) {
  require_host("embedding_forward", table);
  cpu::embedding_forward(table, ids, out, range);
}

void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range) {
  require_host("embedding_backward", d_out);
  cpu::embedding_backward(d_out, ids, d_table, range);
}

void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd) {
  require_host("rmsnorm_forward", x);
  cpu::rmsnorm_forward(x, w, eps, y, rstd);
}

void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw) {
  require_host("rmsnorm_backward", x);
  cpu::rmsnorm_backward(x, w, rstd, dy, dx, dw);
}

void rope_forward(Tensor& x, const Tensor& pos, float theta) {
  require_host("rope_forward", x);
  cpu::rope_forward(x, pos, theta);
}

void rope_backward(Tensor& dx, const Tensor& pos, float theta) {
  require_host("rope_backward", dx);
  cpu::rope_backward(dx, pos, theta);
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  require_host("swiglu_forward", gate);
  cpu::swiglu_forward(gate, up, out);
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up) {
  require_host("swiglu_backward", gate);
  cpu::swiglu_backward(gate, up, d_out, d_gate, d_up);
}

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs) {
  require_host("attention_forward", q);
  cpu::attention_forward(q, k, v, q_pos, scale, out, probs);
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  require_host("attention_backward", q);
  cpu::attention_backward(q, k, v, probs, d_out, scale, dq, dk, dv);
}

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp) {
  require_host("adamw_step", param);
  cpu::adamw_step(param, grad, m, v, hp);
}

}  // namespace opd::backend
