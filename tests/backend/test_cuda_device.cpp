// CUDA device path: device tensors allocate through the registered allocator and round-trip
// through host copies; an op without a CUDA implementation yet reports that clearly. Skips where
// opd was built without CUDA or no GPU is present.
#include <gtest/gtest.h>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/device.hpp"
#endif

using opd::core::Device;
using opd::core::Tensor;

TEST(CudaDevice, RoundTripAndClearOpErrors) {
#ifndef OPD_WITH_CUDA
  GTEST_SKIP() << "built without CUDA (OPD_CUDA=OFF)";
#else
  if (opd::backend::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  ASSERT_TRUE(opd::backend::cuda::activate(0));
  Tensor host = opd::testing::random_tensor({257, 3}, 5);
  Tensor dev = Tensor::empty(host.shape(), host.dtype(), Device::Cuda);
  opd::backend::cuda::copy_to_device(dev.raw(), host.raw(), host.bytes());
  Tensor back = Tensor::empty(host.shape());
  opd::backend::cuda::copy_to_host(back.raw(), dev.raw(), host.bytes());
  EXPECT_EQ(back.to_vector(), host.to_vector());
  try {
    Tensor logits = Tensor::empty({1, 4}, host.dtype(), Device::Cuda);
    Tensor u = Tensor::empty({1}, host.dtype(), Device::Cuda), lp = u;
    Tensor ids = Tensor::empty({1}, opd::core::DType::I32, Device::Cuda);
    opd::backend::sample_rows(logits, 1.0f, 0, 1.0f, u, ids, lp);
    FAIL() << "an op without a CUDA kernel must not silently run";
  } catch (const opd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA implementation"), std::string::npos);
  }
#endif
}
