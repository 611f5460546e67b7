// What every CPU kernel file shares: the Kokkos range policy over host memory and the check that
// a tensor is a host f32 tensor.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cpu {

// 64-bit indices: row and element counts exceed 2^31 for large vocabularies and batches.
using Policy = Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace, Kokkos::IndexType<int64_t>>;

inline void require_f32(const char* op, const char* name, const core::Tensor& t) {
  OPD_CHECK(t.dtype() == core::DType::F32 && t.is_host(), op, ": ", name,
            " must be a host f32 tensor, got ", t.describe());
}

// A host output that is f32, or bf16 where it feeds a GEMM in mixed precision: bf16 rounds as
// cast() does, so writing it directly gives the bits an f32 result cast afterwards would have.
class Output {
 public:
  Output(const char* op, const char* name, core::Tensor& t) {
    OPD_CHECK(t.is_host() && (t.dtype() == core::DType::F32 || t.dtype() == core::DType::BF16), op,
              ": ", name, " must be a host f32 or bf16 tensor, got ", t.describe());
    if (t.dtype() == core::DType::F32)
      f32_ = t.data<float>();
    else
      bf16_ = t.data<uint16_t>();
  }
  void set(int64_t i, float v) const {
    if (f32_)
      f32_[i] = v;
    else
      bf16_[i] = core::float_to_bf16(v);
  }

 private:
  float* f32_ = nullptr;
  uint16_t* bf16_ = nullptr;
};

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
