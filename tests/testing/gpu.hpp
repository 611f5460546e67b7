// Shared by the GPU tests: whether a CUDA device is here (the test skips, reported as skipped,
// when not: CPU-only machines and builds without CUDA), and host <-> device copies of tensors.
#pragma once

#include <gtest/gtest.h>

#include "backend/ops.hpp"

namespace opd::testing {

// True when a CUDA device exists and is now the active one.
inline bool have_gpu() { return backend::use_cuda_device(0); }

inline core::Tensor to_gpu(const core::Tensor& h) { return backend::on_device(h, core::Device::Cuda); }
inline core::Tensor to_cpu(const core::Tensor& d) { return backend::on_device(d, core::Device::Host); }

}  // namespace opd::testing

#define REQUIRE_GPU()                                                                       \
  do {                                                                                      \
    if (!::opd::testing::have_gpu()) GTEST_SKIP() << "no CUDA device (or built without CUDA)"; \
  } while (0)
