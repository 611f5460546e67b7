// NCCL loaded at run time and the device collectives built on it. Without a GPU: a missing or
// wrong library is a clear Input error naming OPD_NCCL_LIBRARY, a real libnccl.so.2 (the CUDA
// toolkit's, where installed) loads with every symbol and answers ncclGetVersion, and asking
// for a device group without a GPU says so. With a GPU and NCCL: a one-rank NCCL group's
// all-reduce, broadcast and gathers equal the host results. (Several ranks: tests/parallel/
// test_device_parallel.cpp, which needs two GPUs.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "backend/device_comm.hpp"
#include "backend/ops.hpp"
#include "comm/communicator.hpp"
#include "comm/device_group.hpp"
#include "comm/mpi_runtime.hpp"
#include "core/error.hpp"
#include "testing/mpi_worker.hpp"
#include "testing/reference.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/nccl_library.hpp"
#endif

using opd::core::Device;
using opd::core::DType;
using opd::core::Tensor;

namespace {

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

bool has_gpu() { return opd::backend::cuda_device_count() > 0; }

Tensor to_device(const Tensor& host) {
  Tensor d = Tensor::empty(host.shape(), host.dtype(), Device::Cuda);
  opd::backend::copy(host, d);
  return d;
}
Tensor to_host(const Tensor& dev) {
  Tensor h = Tensor::empty(dev.shape(), dev.dtype());
  opd::backend::copy(dev, h);
  return h;
}

}  // namespace

TEST(NcclLibrary, LocalRankWithoutMpi) {
  EXPECT_EQ(opd::comm::local_rank(), 0);
  EXPECT_EQ(opd::comm::local_size(), 1);
}

TEST(NcclLibraryWorker, NodeLocalRanksAndAFailedGroupEverywhere) {
  OPD_MPI_WORKER_ONLY();
  const auto world = opd::comm::Communicator::world();
  EXPECT_EQ(opd::comm::local_size(), world.size());  // one node
  EXPECT_EQ(opd::comm::local_rank(), world.rank());
  if (opd::backend::cuda_device_count() == 0) {
    // Every rank fails to make the group with the clear error; none waits for the others.
    EXPECT_THROW(world.device_group(), opd::Error);
    EXPECT_FALSE(world.has_device_group());
  }
}

TEST(NcclLibrary, TwoRanksOnOneNode) {
  EXPECT_MPI_WORKERS_PASS(2, "NcclLibraryWorker.NodeLocalRanksAndAFailedGroupEverywhere");
}

#ifdef OPD_WITH_CUDA
namespace nccl = opd::backend::cuda;

TEST(NcclLibrary, MissingLibraryIsAnInputErrorNamingTheVariable) {
  const ScopedEnv env("OPD_NCCL_LIBRARY", "/nonexistent/opd-test/libnccl.so.2");
  const auto candidates = nccl::nccl_candidates();
  ASSERT_EQ(candidates.size(), 1u) << "an explicit OPD_NCCL_LIBRARY is the only candidate";
  EXPECT_EQ(candidates[0], "/nonexistent/opd-test/libnccl.so.2");
  try {
    nccl::load_nccl(candidates);
    FAIL() << "a missing library must not load";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_EQ(e.exit_status(), 2);
    EXPECT_NE(e.message().find("/nonexistent/opd-test/libnccl.so.2"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("OPD_NCCL_LIBRARY"), std::string::npos) << e.what();
  }
  try {
    nccl::load_nccl({});
    FAIL() << "no candidates must not load";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
  }
}

TEST(NcclLibrary, ALibraryWithoutNcclSymbolsIsRejected) {
  try {
    nccl::load_nccl({"libm.so.6"});
    FAIL() << "libm is no NCCL";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(e.message().find("libm.so.6: not a usable NCCL"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("ncclAllReduce"), std::string::npos) << e.what();
  }
}

TEST(NcclLibrary, DefaultSearchStartsWithTheLoaderThenPythonPackages) {
  const ScopedEnv env("OPD_NCCL_LIBRARY", nullptr);
  const auto candidates = nccl::nccl_candidates();
  ASSERT_FALSE(candidates.empty());
  EXPECT_EQ(candidates[0], "libnccl.so.2");
  for (std::size_t i = 1; i < candidates.size(); ++i) {
    EXPECT_NE(candidates[i].find("/nvidia/nccl/lib/libnccl.so.2"), std::string::npos) << candidates[i];
    EXPECT_TRUE(std::filesystem::exists(candidates[i])) << candidates[i];
  }
}

TEST(NcclLibrary, TheToolkitsLibraryLoadsAndAnswersItsVersion) {
  std::string path;
  for (const char* p : {"/usr/local/cuda/lib64/libnccl.so.2", "/usr/local/cuda-13.0/lib/libnccl.so.2"})
    if (std::filesystem::exists(p)) path = p;
  if (path.empty()) GTEST_SKIP() << "no libnccl.so.2 in the CUDA toolkit here";
  const auto lib = nccl::load_nccl({"/nonexistent/libnccl.so.2", path});  // the second one wins
  EXPECT_EQ(lib->path, path);
  EXPECT_GE(lib->version, 20700);  // ncclSend/ncclRecv exist from 2.7 on
  const std::string v = lib->version_string();
  EXPECT_EQ(v.rfind("2.", 0), 0u) << v;
  EXPECT_EQ(std::count(v.begin(), v.end(), '.'), 2) << v;
  int again = 0;
  EXPECT_EQ(lib->get_version(&again), 0);
  EXPECT_EQ(again, lib->version);
  EXPECT_EQ(lib->error_string(0), "no error");
  for (const void* fn : {(const void*)lib->get_unique_id, (const void*)lib->comm_init_rank,
                         (const void*)lib->comm_destroy, (const void*)lib->comm_abort,
                         (const void*)lib->comm_get_async_error, (const void*)lib->all_reduce,
                         (const void*)lib->broadcast, (const void*)lib->all_gather,
                         (const void*)lib->send, (const void*)lib->recv,
                         (const void*)lib->group_start, (const void*)lib->group_end})
    EXPECT_NE(fn, nullptr);
  // The default search finds it too (the loader's cache or LD_LIBRARY_PATH has it here).
  const ScopedEnv env("OPD_NCCL_LIBRARY", path.c_str());
  EXPECT_EQ(nccl::load_nccl(nccl::nccl_candidates())->version, lib->version);
}

TEST(NcclLibrary, MakesGroupIdsWithoutAGpu) {
  // ncclGetUniqueId needs no device (it opens the bootstrap socket): rank 0 of a group on a
  // GPU node calls it before any device work.
  try {
    nccl::nccl();
  } catch (const opd::Error& e) {
    GTEST_SKIP() << "no NCCL here: " << e.what();
  }
  const opd::backend::DeviceCommId a = opd::backend::new_device_comm_id();
  const opd::backend::DeviceCommId b = opd::backend::new_device_comm_id();
  EXPECT_NE(a, b);
  EXPECT_NE(a, opd::backend::DeviceCommId{});
}

TEST(NcclLibrary, NoGpuIsAClearErrorBeforeAnyNcclCall) {
  if (has_gpu()) GTEST_SKIP() << "this machine has a GPU";
  try {
    opd::backend::require_device_comm();
    FAIL() << "no device: no device group";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(e.message().find("CUDA device"), std::string::npos) << e.what();
  }
  // Through the communicator (the one-rank one, no MPI here): the same error, every time.
  const auto world = opd::comm::Communicator::world();
  for (int i = 0; i < 2; ++i)
    EXPECT_THROW(world.device_group(), opd::Error);
  EXPECT_EQ(opd::comm::use_local_cuda_device(), -1);
}
#elif !defined(OPD_DEVICE_EMULATION)  // (whose device groups run over MPI)
TEST(NcclLibrary, WithoutTheCudaBackendDeviceGroupsAreAClearError) {
  try {
    opd::backend::DeviceComm comm(0, 1, opd::backend::DeviceCommId{});
    FAIL() << "no CUDA backend: no device communicator";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(e.message().find("built without"), std::string::npos) << e.what();
  }
  EXPECT_EQ(opd::backend::cuda_device_count(), 0);
  EXPECT_EQ(opd::comm::use_local_cuda_device(), -1);
}
#endif

// ---- with a GPU and NCCL: a one-rank group ----------------------------------------------------

class OneRankDeviceGroup : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!has_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
    ASSERT_EQ(opd::comm::use_local_cuda_device(), 0);
    try {
      opd::backend::require_device_comm();
    } catch (const opd::Error& e) {
      GTEST_SKIP() << "NCCL not usable here: " << e.what();
    }
  }
  const opd::comm::DeviceGroup& group() { return world_.device_group(); }
  opd::comm::Communicator world_ = opd::comm::Communicator::world();
};

TEST_F(OneRankDeviceGroup, AllReduceAndBroadcastEqualTheHostResults) {
  const Tensor host = opd::testing::random_tensor({33, 17}, 1);
  std::vector<float> expected = host.to_vector();
  world_.allreduce_sum(expected.data(), static_cast<int64_t>(expected.size()));  // host path
  Tensor dev = to_device(host);
  group().allreduce_sum(dev);
  EXPECT_EQ(to_host(dev).to_vector(), expected);
  // The asynchronous form, twice in flight, then one wait.
  Tensor dev2 = to_device(host);
  group().start_allreduce_sum(dev);
  group().start_allreduce_sum(dev2);
  group().wait();
  EXPECT_EQ(to_host(dev).to_vector(), expected);
  EXPECT_EQ(to_host(dev2).to_vector(), expected);
  group().broadcast(dev, 0);
  EXPECT_EQ(to_host(dev).to_vector(), host.to_vector());
  EXPECT_GT(opd::comm::mpi_seconds(), 0.0);  // device collectives count as communication
}

TEST_F(OneRankDeviceGroup, Bf16SumKeepsTheBits) {
  Tensor host = Tensor::empty({64}, DType::BF16);
  for (int i = 0; i < 64; ++i) host.data<uint16_t>()[i] = static_cast<uint16_t>(0x3f80 + i);  // 1.0 ...
  Tensor dev = to_device(host);
  group().allreduce_sum(dev);
  const Tensor back = to_host(dev);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(back.data<uint16_t>()[i], host.data<uint16_t>()[i]);
}

TEST_F(OneRankDeviceGroup, GathersAndColumnBlocks) {
  const Tensor local = opd::testing::random_tensor({5, 7}, 2);
  Tensor out = to_device(Tensor::zeros({5, 7}));
  group().allgather(to_device(local), out);
  EXPECT_EQ(to_host(out).to_vector(), local.to_vector());
  Tensor full = to_device(Tensor::zeros({5, 7}));
  group().allgather_columns(to_device(local), full);
  EXPECT_EQ(to_host(full).to_vector(), local.to_vector());
  // Column block 2 of a [5, 21] matrix is its columns [14, 21).
  const Tensor wide = opd::testing::random_tensor({5, 21}, 3);
  Tensor block = to_device(Tensor::zeros({5, 7}));
  opd::backend::take_column_block(to_device(wide), 2, block);
  EXPECT_EQ(to_host(block).to_vector(), opd::testing::column_slice(wide, 14, 21).to_vector());
}
