// Device checks shared by the dispatch: an op reached with a tensor on a device whose backend
// is not built (or not yet implemented for that op) is a clear error, never a wild pointer.
#pragma once

#include "core/device_access.hpp"
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
// require_host's clear error. OPD_ON_CUDA_STAGED marks the ops whose CUDA versions also take
// host tensors (copies; small id lists and scalars that they upload): the same, except that
// device emulation does not hold them to device tensors only.
#ifdef OPD_WITH_CUDA
#define OPD_ON_CUDA(op, t, call)                          \
  do {                                                    \
    if ((t).device() == ::opd::core::Device::Cuda) return ::opd::backend::cuda::call; \
  } while (0)
// Within a branch already known to hold CUDA tensors: the CUDA call, or (without the CUDA
// backend) the clear error.
#define OPD_ON_CUDA_CALL(op, call) ::opd::backend::cuda::call
#define OPD_ON_CUDA_STAGED OPD_ON_CUDA
#elif defined(OPD_DEVICE_EMULATION)
// Device emulation (core/device_access.hpp): a CUDA tensor falls through to the CPU call with
// device memory open to it until the dispatch function returns.
#define OPD_ACCESS_CAT(a, b) a##b
#define OPD_ACCESS_NAME(line) OPD_ACCESS_CAT(opd_device_access_, line)
#define OPD_ON_CUDA(op, t, call)                      \
  const ::opd::core::DeviceAccess OPD_ACCESS_NAME(__LINE__)( \
      (t).device() == ::opd::core::Device::Cuda, true)
#define OPD_ON_CUDA_STAGED(op, t, call) \
  const ::opd::core::DeviceAccess OPD_ACCESS_NAME(__LINE__)((t).device() == ::opd::core::Device::Cuda)
#define OPD_ON_CUDA_CALL(op, call) (::opd::core::DeviceAccess(true), ::opd::backend::cpu::call)
#else
#define OPD_ON_CUDA(op, t, call) ::opd::backend::require_host(op, t)
#define OPD_ON_CUDA_STAGED OPD_ON_CUDA
#define OPD_ON_CUDA_CALL(op, call) \
  throw ::opd::Error(::opd::ErrorKind::Input, std::string("op ") + op + " needs the CUDA backend", \
                     "backend", "run with device = \"cpu\", or build opd with CUDA")
#endif
