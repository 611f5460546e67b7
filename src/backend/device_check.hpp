// Device checks shared by the dispatch: an op reached with a tensor on a device whose backend
// is not built (or not yet implemented for that op) is a clear error, never a wild pointer.
#pragma once

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend {

inline void require_host(const char* op, const core::Tensor& t) {
  if (t.device() != core::Device::Host)
    throw Error(ErrorKind::Input, std::string("op ") + op + " has no CUDA implementation yet",
                "backend", "run with device = \"cpu\"");
}


}  // namespace opd::backend

// In a dispatch function: a CUDA tensor `t` runs cuda::CALL and returns; a host one falls
// through to the CPU call after the macro. Without the CUDA backend, a CUDA tensor is
// require_host's clear error.
#ifdef OPD_WITH_CUDA
#define OPD_ON_CUDA(op, t, call)                          \
  do {                                                    \
    if ((t).device() == ::opd::core::Device::Cuda) return ::opd::backend::cuda::call; \
  } while (0)
// Within a branch already known to hold CUDA tensors: the CUDA call, or (without the CUDA
// backend) the clear error.
#define OPD_ON_CUDA_CALL(op, call) ::opd::backend::cuda::call
#else
#define OPD_ON_CUDA(op, t, call) ::opd::backend::require_host(op, t)
#define OPD_ON_CUDA_CALL(op, call) \
  throw ::opd::Error(::opd::ErrorKind::Input, std::string("op ") + op + " needs the CUDA backend", \
                     "backend", "run with device = \"cpu\", or build opd with CUDA")
#endif
