// backend::Recording's promise, which a CUDA graph relies on: every call with a recorded key
// touches the device memory its capture touched (the graph replays those addresses). Device
// emulation checks it on every such call; this shows that the check catches a replay on other
// memory and lets through what a graph allows. (Elsewhere a device-emulation build's test only:
// on a GPU a wrong replay is silent, which is why the emulated check exists.)
#include <gtest/gtest.h>

#include "backend/ops.hpp"
#include "backend/recording.hpp"
#include "core/device_access.hpp"
#include "core/error.hpp"
#include "testing/gpu.hpp"

namespace ops = opd::backend;
using opd::backend::Recording;
using opd::core::Device;
using opd::core::DType;
using opd::core::Tensor;
using opd::testing::to_cpu;
using opd::testing::to_gpu;

TEST(DeviceRecording, AReplayOnOtherMemoryIsCaught) {
  if (!opd::core::kDeviceEmulation) GTEST_SKIP() << "a device-emulation build's check";
  ASSERT_TRUE(opd::testing::have_gpu());
  Tensor a = to_gpu(Tensor::zeros({4})), b = to_gpu(Tensor::zeros({4}));
  Tensor* target = &a;
  float value = 1.0f;
  const auto step = [&] {  // a scratch tensor of its own: memory of the graph, free to differ
    Tensor scratch = Tensor::empty({4}, DType::F32, Device::Cuda);
    ops::fill(scratch, value);
    ops::copy(scratch, *target);
  };
  Recording rec;
  for (int call = 0; call < 4; ++call) {  // run, "capture", two "replays" with new values
    value = static_cast<float>(call);
    EXPECT_NO_THROW(rec.run(Device::Cuda, 7, step)) << call;
  }
  EXPECT_EQ(to_cpu(a).to_vector(), std::vector<float>(4, 3.0f));
  target = &b;  // the same key on other memory: a graph would still write a
  try {
    rec.run(Device::Cuda, 7, step);
    FAIL() << "a replay on other memory must be caught";
  } catch (const opd::Error& e) {
    EXPECT_NE(e.message().find("stale addresses"), std::string::npos) << e.what();
  }
  for (int call = 0; call < 3; ++call) EXPECT_NO_THROW(rec.run(Device::Cuda, 8, step));  // a new key
  EXPECT_EQ(to_cpu(b).to_vector(), std::vector<float>(4, 3.0f));
}
