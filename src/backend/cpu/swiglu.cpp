// CPU SwiGLU: out = silu(gate) * up, and its backward; outputs f32 or bf16 (GEMM operands).
#include <Kokkos_Core.hpp>
#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "backend/cpu/fast_exp.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

void require_like(const char* op, const char* name, const Tensor& t, const Tensor& gate) {
  OPD_CHECK(t.dtype() == DType::F32 && t.is_host(), op, ": ", name,
            " must be a host f32 tensor, got ", t.describe());
  OPD_CHECK(t.numel() == gate.numel(), op, ": ", name, " ", t.describe(), " does not match gate ",
            gate.describe());
}

// An f32 or bf16 output the size of gate.
Output output_like(const char* op, const char* name, Tensor& t, const Tensor& gate) {
  OPD_CHECK(t.numel() == gate.numel(), op, ": ", name, " ", t.describe(), " does not match gate ",
            gate.describe());
  return Output(op, name, t);
}

}  // namespace

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  require_like("swiglu_forward", "gate", gate, gate);
  require_like("swiglu_forward", "up", up, gate);
  const Output po = output_like("swiglu_forward", "out", out, gate);
  const float* pg = gate.data<float>();
  const float* pu = up.data<float>();
  Kokkos::parallel_for("opd::swiglu_forward", Policy(0, gate.numel()), [=](int64_t i) {
    const float g = pg[i];
    po.set(i, g / (1.0f + fast_exp(-g)) * pu[i]);
  });
}

// silu(g) = g s, s = sigmoid(g): d silu / dg = s (1 + g (1 - s)).
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up) {
  require_like("swiglu_backward", "gate", gate, gate);
  require_like("swiglu_backward", "up", up, gate);
  require_like("swiglu_backward", "d_out", d_out, gate);
  const Output pdg = output_like("swiglu_backward", "d_gate", d_gate, gate);
  const Output pdu = output_like("swiglu_backward", "d_up", d_up, gate);
  const float* pg = gate.data<float>();
  const float* pu = up.data<float>();
  const float* pd = d_out.data<float>();
  // Every input is read before either output is written, so the outputs may alias the inputs.
  Kokkos::parallel_for("opd::swiglu_backward", Policy(0, gate.numel()), [=](int64_t i) {
    const float g = pg[i], u = pu[i], d = pd[i];
    const float s = 1.0f / (1.0f + fast_exp(-g));
    pdu.set(i, d * g * s);
    pdg.set(i, d * u * s * (1.0f + g * (1.0f - s)));
  });
}

}  // namespace opd::backend::cpu
