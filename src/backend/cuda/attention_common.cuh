// The host side the attention launchers of backend/cuda share: dispatch on the head-dimension
// bound, the shared-memory opt-in, the multiprocessor count, a grow-only device workspace,
// argument checks, and the entry points of the forward, delta and probs launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backend/cuda/attention_kernels.cuh"
#include "backend/cuda/attention_tc_blocks.cuh"
#include "backend/cuda/cuda_check.hpp"

namespace opd::backend::cuda::attn {

using core::Tensor;

// The dtype of Elem (attention_kernels.cuh) in tensors.
constexpr core::DType kElemType = core::DType::F32;

// f(std::integral_constant<int, kE>) for kE = head_dim_bound(E).
template <class F>
void with_head_dim(int E, F&& f) {
  switch (head_dim_bound(E)) {
    case 32:
      f(std::integral_constant<int, 32>{});
      break;
    case 64:
      f(std::integral_constant<int, 64>{});
      break;
    case 128:
      f(std::integral_constant<int, 128>{});
      break;
    default:
      f(std::integral_constant<int, 256>{});
      break;
  }
}

// Kernels above 48 KB of dynamic shared memory must opt in.
template <class Kernel>
void allow_shared(Kernel kernel, std::size_t bytes, const char* what) {
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(bytes)),
          what);
}

inline int sm_count() {
  static int n = [] {
    int dev = 0, count = 0;
    check(cudaGetDevice(&dev), "attention: cudaGetDevice");
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev),
          "attention: multiprocessor count");
    return count;
  }();
  return n;
}

// A device buffer for split partials and the backward's D, grown on demand and kept, so that
// steps do not allocate. One per process (one device per rank); every use is on stream(), so
// consecutive ops may share it. A buffer it outgrows is kept, not freed: a recorded graph
// (graph.cpp) may still write it.
inline float* workspace(std::size_t floats) {
  static std::vector<float*> all;  // the newest last
  static std::size_t cap = 0;
  if (floats > cap) {
    float* buf = nullptr;
    check(cudaMalloc(&buf, floats * sizeof(float)), "attention workspace: cudaMalloc");
    all.push_back(buf);
    cap = floats;
  }
  return all.back();
}

// Checks q [B, T, H, E], k = v [B, S, G, E] (device, Elem) and returns the shape.
inline Shape check_shapes(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  require_device(op, "q", q, kElemType);
  require_device(op, "k", k, kElemType);
  require_device(op, "v", v, kElemType);
  OPD_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.shape() == k.shape() && k.dim(0) == q.dim(0) &&
                k.dim(3) == q.dim(3) && k.dim(2) > 0 && q.dim(2) % k.dim(2) == 0,
            op, ": q ", q.describe(), " k ", k.describe(), " v ", v.describe());
  OPD_CHECK(q.dim(3) <= kMaxHeadDim, op, ": head dimension ", q.dim(3), " above ", kMaxHeadDim);
  constexpr int64_t kMax = int64_t{1} << 30;
  OPD_CHECK(q.dim(0) * q.dim(1) < kMax && q.dim(1) * q.dim(2) < kMax &&
                k.dim(0) * k.dim(1) < kMax && k.dim(0) * k.dim(2) <= 65535,
            op, ": sizes beyond this kernel's int indexing: q ", q.describe(), " k ", k.describe());
  return Shape{static_cast<int>(q.dim(0)), static_cast<int>(q.dim(1)), static_cast<int>(q.dim(2)),
               static_cast<int>(k.dim(2)), static_cast<int>(q.dim(3)), static_cast<int>(k.dim(1))};
}

// Whether attention with `operands` (F32 or BF16, backend/ops.hpp) on problem s runs the bf16
// tensor-core kernels (attention_tc_*.cuh): bf16 operands, a head dimension they were built for
// and a device with bf16 tensor cores (sm_80 on). Otherwise the f32 kernels run, which compute
// the same attention more exactly.
inline bool tensor_cores_for(const Shape& s, core::DType operands) {
  static const bool capable = [] {
    int dev = 0, major = 0;
    check(cudaGetDevice(&dev), "attention: cudaGetDevice");
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
          "attention: compute capability");
    return major >= 8;
  }();
  return operands == core::DType::BF16 && s.E <= tc::kMaxHeadDim && capable;
}

// The forward (keys split over blocks when the launch is small) into out [B, T, H, E] and lse
// [B, H, T] (may be null); the delta pass into args.delta [B, H, T]. With tensor_cores, the bf16
// kernels.
void flash_forward_run(const FwdArgs& args, float* out, float* lse, bool tensor_cores);
void flash_delta_run(const FwdArgs& args, bool tensor_cores);

// The simple kernels that keep P (attention_probs.cu): a test and debugging path.
void probs_forward(const Shape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& q_pos, float scale, Tensor& out, Tensor& probs, Tensor* lse);
void probs_backward(const Shape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& probs, const Tensor& d_out, float scale, Tensor& dq, Tensor& dk,
                    Tensor& dv);

}  // namespace opd::backend::cuda::attn
