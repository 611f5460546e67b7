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

}  // namespace opd::backend::cpu
