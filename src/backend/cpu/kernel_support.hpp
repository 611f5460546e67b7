// What every CPU kernel file shares: the Kokkos range policy over host memory and the check that
// a tensor is a host f32 tensor.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cpu {

// 64-bit indices: row and element counts exceed 2^31 for large vocabularies and batches.
using Policy = Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace, Kokkos::IndexType<int64_t>>;

inline void require_f32(const char* op, const char* name, const core::Tensor& t) {
  OPD_CHECK(t.dtype() == core::DType::F32 && t.is_host(), op, ": ", name,
            " must be a host f32 tensor, got ", t.describe());
}

// out[j] += sum over rows r of term(r, j), accumulated in double. Race-free under a threaded
// Kokkos: each work item owns a block of columns and walks every row (gradients of per-column
// parameters such as biases and norm gains).
template <class Term>
void accumulate_column_sums(const char* label, int64_t rows, int64_t cols, float* out, Term term) {
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  Kokkos::parallel_for(label, Policy(0, blocks), [=](int64_t blk) {
    const int64_t j0 = blk * kBlock;
    const int64_t w = cols - j0 < kBlock ? cols - j0 : kBlock;
    double acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < w; ++j) acc[j] += term(r, j0 + j);
    for (int64_t j = 0; j < w; ++j) out[j0 + j] += static_cast<float>(acc[j]);
  });
}

}  // namespace opd::backend::cpu
