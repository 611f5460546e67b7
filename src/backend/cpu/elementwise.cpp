// CPU elementwise ops: fill, copy, cast, scale, axpy, add, add_bias, bias_backward, sum_squares.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;
using ByteView =
    Kokkos::View<unsigned char*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

// Elements per work item of sum_squares (each reduced in double with independent accumulators).
constexpr int64_t kSumBlock = 4096;

void require_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  OPD_CHECK(a.numel() == b.numel(), op, ": element counts differ: ", a.describe(), " vs ",
            b.describe());
}

// x viewed as [N, D] with D = bias length: the last dimension of x must be D.
int64_t rows_for_bias(const char* op, const Tensor& x, const Tensor& bias) {
  const int64_t d = bias.numel();
  OPD_CHECK(bias.ndim() == 1 && x.ndim() >= 1 && x.dim(-1) == d, op, ": bias ", bias.describe(),
            " does not match the last dimension of ", x.describe());
  return d == 0 ? 0 : x.numel() / d;
}

}  // namespace

void fill(Tensor& x, float value) {
  OPD_CHECK(x.is_host() && (x.dtype() == DType::F32 || x.dtype() == DType::I32),
            "fill: needs a host f32 or i32 tensor, got ", x.describe());
  const int64_t n = x.numel();
  if (x.dtype() == DType::F32) {
    float* p = x.data<float>();
    Kokkos::parallel_for("opd::fill_f32", Policy(0, n), [=](int64_t i) { p[i] = value; });
  } else {
    OPD_CHECK(value == std::trunc(value) && std::abs(value) <= 2147483520.0f, "fill: ", value,
              " is not an i32 value for ", x.describe());
    int32_t* p = x.data<int32_t>();
    const int32_t iv = static_cast<int32_t>(value);
    Kokkos::parallel_for("opd::fill_i32", Policy(0, n), [=](int64_t i) { p[i] = iv; });
  }
}

void copy(const Tensor& src, Tensor& dst) {
  OPD_CHECK(
      src.is_host() && dst.is_host() && src.dtype() == dst.dtype() && src.numel() == dst.numel(),
      "copy: needs host tensors of the same dtype and element count, got ", src.describe(), " -> ",
      dst.describe());
  if (src.numel() == 0 || src.raw() == dst.raw()) return;
  ByteView from(static_cast<unsigned char*>(src.raw()), src.bytes());
  ByteView to(static_cast<unsigned char*>(dst.raw()), dst.bytes());
  Kokkos::deep_copy(to, from);
}

void cast(const Tensor& src, Tensor& dst) {
  const bool down = src.dtype() == DType::F32 && dst.dtype() == DType::BF16;
  const bool up = src.dtype() == DType::BF16 && dst.dtype() == DType::F32;
  OPD_CHECK(src.is_host() && dst.is_host() && (down || up), "cast: needs host f32 -> bf16 or bf16 -> f32, got ",
            src.describe(), " -> ", dst.describe());
  require_same_numel("cast", src, dst);
  if (down) {
    const float* s = src.data<float>();
    uint16_t* d = dst.data<uint16_t>();
    Kokkos::parallel_for("opd::cast_to_bf16", Policy(0, src.numel()),
                         [=](int64_t i) { d[i] = core::float_to_bf16(s[i]); });
  } else {
    const uint16_t* s = src.data<uint16_t>();
    float* d = dst.data<float>();
    Kokkos::parallel_for("opd::cast_to_f32", Policy(0, src.numel()),
                         [=](int64_t i) { d[i] = core::bf16_to_float(s[i]); });
  }
}

void scale(Tensor& x, float alpha) {
  require_f32("scale", "x", x);
  float* p = x.data<float>();
  Kokkos::parallel_for("opd::scale", Policy(0, x.numel()), [=](int64_t i) { p[i] *= alpha; });
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  require_f32("axpy", "x", x);
  require_f32("axpy", "y", y);
  require_same_numel("axpy", x, y);
  const float* px = x.data<float>();
  float* py = y.data<float>();
  Kokkos::parallel_for("opd::axpy", Policy(0, x.numel()),
                       [=](int64_t i) { py[i] += alpha * px[i]; });
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  require_f32("add", "a", a);
  require_f32("add", "b", b);
  require_f32("add", "out", out);
  require_same_numel("add", a, b);
  require_same_numel("add", a, out);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  // Elementwise, so out may alias a or b.
  Kokkos::parallel_for("opd::add", Policy(0, a.numel()), [=](int64_t i) { po[i] = pa[i] + pb[i]; });
}

void add_bias(Tensor& x, const Tensor& bias) {
  require_f32("add_bias", "x", x);
  require_f32("add_bias", "bias", bias);
  const int64_t n = rows_for_bias("add_bias", x, bias);
  const int64_t d = bias.numel();
  float* px = x.data<float>();
  const float* pb = bias.data<float>();
  Kokkos::parallel_for("opd::add_bias", Policy(0, n), [=](int64_t r) {
    float* row = px + r * d;
    for (int64_t j = 0; j < d; ++j) row[j] += pb[j];
  });
}

void bias_backward(const Tensor& dy, Tensor& dbias) {
  require_f32("bias_backward", "dy", dy);
  require_f32("bias_backward", "dbias", dbias);
  const int64_t n = rows_for_bias("bias_backward", dy, dbias);
  const int64_t d = dbias.numel();
  const float* pdy = dy.data<float>();
  float* pdb = dbias.data<float>();
  accumulate_column_sums("opd::bias_backward", n, d, pdb,
                         [=](int64_t r, int64_t j) { return static_cast<double>(pdy[r * d + j]); });
}

double sum_squares(const Tensor& x) {
  require_f32("sum_squares", "x", x);
  const int64_t n = x.numel();
  const float* p = x.data<float>();
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  double total = 0.0;
  Kokkos::parallel_reduce(
      "opd::sum_squares", Policy(0, blocks),
      [=](int64_t blk, double& sum) {
        const int64_t i0 = blk * kSumBlock;
        const int64_t i1 = std::min(n, i0 + kSumBlock);
        // Independent accumulators so the loop pipelines (double adds are not reassociated).
        double a[8] = {};
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
          for (int u = 0; u < 8; ++u) a[u] += static_cast<double>(p[i + u]) * p[i + u];
        for (; i < i1; ++i) a[0] += static_cast<double>(p[i]) * p[i];
        sum += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      },
      total);
  return total;
}

}  // namespace opd::backend::cpu
