// Error checking and launch geometry shared by the CUDA kernels of backend/cuda/.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend::cuda {

// Every CUDA runtime call and launch goes through these: a failure becomes an opd::Error that
// names the call, never a silent wrong result.
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    internal_error("cuda", std::string(what) + ": " + cudaGetErrorString(err));
}
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// The stream every op of backend/cuda runs on (device.cu): one per process, so ops run in the
// order they are issued. Created blocking, so that the synchronous host copies (on the legacy
// default stream) stay ordered with it; a stream of its own rather than the legacy one so that
// a sequence of ops can be captured as a CUDA graph (graph.cpp).
cudaStream_t stream();

// A device tensor of the given dtype (Input errors name the op and the tensor).
inline void require_device(const char* op, const char* name, const core::Tensor& t,
                           core::DType dtype = core::DType::F32) {
  OPD_CHECK(t.defined() && t.device() == core::Device::Cuda && t.dtype() == dtype, op, ": ", name,
            " must be a CUDA ", core::dtype_name(dtype), " tensor, got ", t.describe());
}

// Grid-stride launches: enough blocks to fill the device, never more than the work.
constexpr int kThreads = 256;
inline int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)));
}

}  // namespace opd::backend::cuda
