// Block-wide reductions for the CUDA kernels: every thread of the block passes its value and
// gets the block's sum or maximum. `red` is shared memory of blockDim.x values (blockDim.x a
// power of two); the function synchronises before returning, so `red` can be reused.
#pragma once

namespace opd::backend::cuda {

template <class T>
__device__ T block_reduce(T v, T* red, bool is_max) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const T o = red[threadIdx.x + stride];
      red[threadIdx.x] = is_max ? (red[threadIdx.x] > o ? red[threadIdx.x] : o) : red[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const T r = red[0];
  __syncthreads();
  return r;
}

}  // namespace opd::backend::cuda
