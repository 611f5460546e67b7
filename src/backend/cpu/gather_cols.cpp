// CPU column gather: out[n, i] = x[n, ids[n, i]] for x [N, V] f32, ids [N, k] i32, out [N, k] f32.
// Every id is validated before any element is read (no throwing inside a parallel body); one
// Kokkos iteration per row, each touching only its own row of out.
#include <Kokkos_Core.hpp>
#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out) {
  OPD_CHECK(x.defined() && ids.defined() && out.defined(),
            "gather_cols: x, ids and out must be defined tensors");
  require_f32("gather_cols", "x", x);
  require_f32("gather_cols", "out", out);
  OPD_CHECK(ids.dtype() == core::DType::I32 && ids.is_host(),
            "gather_cols: ids must be a host i32 tensor, got ", ids.describe());
  OPD_CHECK(x.ndim() == 2, "gather_cols: x must be [N, V], got ", x.describe());
  const int64_t N = x.dim(0), V = x.dim(1);
  OPD_CHECK(ids.ndim() == 2 && ids.dim(0) == N, "gather_cols: ids must be [N = ", N, ", k], got ",
            ids.describe());
  const int64_t K = ids.dim(1);
  OPD_CHECK(out.ndim() == 2 && out.dim(0) == N && out.dim(1) == K, "gather_cols: out must be [", N,
            ", ", K, "], got ", out.describe());

  const int32_t* pid = ids.data<int32_t>();
  const int64_t total = N * K;
  int64_t bad = 0;
  Kokkos::parallel_reduce(
      "opd::cpu::gather_cols_check", Policy(0, total),
      [=](int64_t i, int64_t& count) { count += (pid[i] < 0 || pid[i] >= V) ? 1 : 0; }, bad);
  if (bad > 0) {
    int64_t first = 0;
    while (pid[first] >= 0 && pid[first] < V) ++first;
    OPD_CHECK(bad == 0, "gather_cols: ", bad, " id(s) outside [0, ", V, "), first ids[", first / K,
              ", ", first % K, "] = ", pid[first]);
  }

  const float* px = x.data<float>();
  float* po = out.data<float>();
  Kokkos::parallel_for("opd::cpu::gather_cols", Policy(0, N), [=](int64_t n) {
    const float* xr = px + n * V;
    const int32_t* ir = pid + n * K;
    float* orow = po + n * K;
    for (int64_t i = 0; i < K; ++i) orow[i] = xr[ir[i]];
  });
}

}  // namespace opd::backend::cpu
