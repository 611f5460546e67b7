// Machine ceilings measured inside `opd bench`, so that throughput is stated as a fraction of
// what this machine does in the same process with the same settings: the sgemm rate (through the
// backend, i.e. OpenBLAS or cuBLAS) and the streaming read bandwidth of host memory.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.hpp"

namespace opd::app {

// GFLOP/s of an n x n x n sgemm through backend::gemm (best of three after a warm-up).
double measure_sgemm_gflops(int64_t n = 2048);
// The same on the CUDA device (cuBLASLt; f32 operands, or bf16 ones with f32 accumulation on the
// tensor cores), timed between device synchronisations.
double measure_device_gemm_gflops(int64_t n = 8192, core::DType operands = core::DType::F32);
// The dense bf16 tensor-core peak of a GPU, in TFLOP/s, from its name (the vendor's datasheet
// figure without sparsity); 0 for a card this table does not know.
double dense_bf16_peak_tflops(const std::string& device_name);
// The CUDA device's memory bandwidth in GB/s: bytes read plus written by a device-to-device copy
// of `mib` MiB, timed between synchronisations.
double measure_device_copy_gbs(int64_t mib = 1024);
// GB/s of a streaming read of `bytes` by `threads` threads (best of three, pages touched first).
double measure_read_bandwidth(int threads, int64_t bytes = int64_t{1} << 30);

}  // namespace opd::app
