// KV-cache support on CPU: scatter of new key/value rows to their absolute positions.
#include <Kokkos_Core.hpp>
#include <cstring>

#include "backend/cpu/cpu_ops.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst) {
  OPD_CHECK(src.ndim() == 3 && dst.ndim() == 3 && pos.ndim() == 2, "scatter_rows: ",
            src.describe(), " ", pos.describe(), " ", dst.describe());
  const int64_t B = src.dim(0), T = src.dim(1), R = src.dim(2), S = dst.dim(1);
  OPD_CHECK(dst.dim(0) == B && dst.dim(2) == R && pos.dim(0) == B && pos.dim(1) == T,
            "scatter_rows shapes: ", src.describe(), " ", pos.describe(), " ", dst.describe());
  const float* s = src.data<float>();
  const int32_t* p = pos.data<int32_t>();
  float* d = dst.data<float>();
  // Positions within one sequence are distinct, so rows never collide: race-free in parallel.
  Kokkos::parallel_for(
      "opd::scatter_rows", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, B * T),
      [=](int64_t i) {
        const int64_t b = i / T;
        const int32_t j = p[i];
        if (j < 0 || j >= S) return;  // checked below; never write out of bounds
        std::memcpy(d + (b * S + j) * R, s + i * R, static_cast<std::size_t>(R) * sizeof(float));
      });
  for (int64_t i = 0; i < B * T; ++i)
    OPD_CHECK(p[i] >= 0 && p[i] < S, "scatter_rows: position ", p[i], " outside cache of ", S);
}

}  // namespace opd::backend::cpu
