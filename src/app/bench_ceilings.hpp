// Machine ceilings measured inside `opd bench`, so that throughput is stated as a fraction of
// what this machine does in the same process with the same settings: the sgemm rate (through the
// backend, i.e. OpenBLAS or cuBLAS) and the streaming read bandwidth of host memory.
#pragma once

#include <cstdint>

namespace opd::app {

// GFLOP/s of an n x n x n sgemm through backend::gemm (best of three after a warm-up).
double measure_sgemm_gflops(int64_t n = 2048);
// The same on the CUDA device (cuBLASLt, fp32), timed between device synchronisations.
double measure_device_gemm_gflops(int64_t n = 8192);
// The CUDA device's memory bandwidth in GB/s: bytes read plus written by a device-to-device copy
// of `mib` MiB, timed between synchronisations.
double measure_device_copy_gbs(int64_t mib = 1024);
// GB/s of a streaming read of `bytes` by `threads` threads (best of three, pages touched first).
double measure_read_bandwidth(int threads, int64_t bytes = int64_t{1} << 30);

}  // namespace opd::app
