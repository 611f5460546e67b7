// Tensor, pipeline and data parallelism on CUDA tensors (NCCL), two ranks on two GPUs of one
// node (mpirun -np 2; each rank takes the GPU of its node-local rank). Each result must equal
// the host (MPI) path's bit for bit: a two-rank sum is one addition either way. Skips where
// fewer than two GPUs (or no NCCL) are present.
#include <gtest/gtest.h>

#include <cstring>

#include "backend/device_comm.hpp"
#include "backend/ops.hpp"
#include "comm/communicator.hpp"
#include "comm/device_group.hpp"
#include "core/error.hpp"
#include "parallel/gradient_buckets.hpp"
#include "parallel/pipeline_parallel.hpp"
#include "parallel/tensor_parallel.hpp"
#include "testing/mpi_worker.hpp"
#include "testing/reference.hpp"

using opd::core::Device;
using opd::core::DType;
using opd::core::Tensor;
using opd::testing::random_tensor;

namespace {

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

// The reason these tests cannot run here, or empty when they can.
std::string missing_devices() {
  if (opd::backend::cuda_device_count() < 2) return "needs two CUDA devices";
  try {
    opd::backend::require_device_comm();
  } catch (const opd::Error& e) {
    return std::string("NCCL not usable: ") + e.what();
  }
  return {};
}

#define OPD_NEEDS_TWO_GPUS()                                  \
  do {                                                        \
    const std::string why = missing_devices();                \
    if (!why.empty()) GTEST_SKIP() << why;                    \
  } while (0)

void take_my_gpu() { ASSERT_GE(opd::comm::use_local_cuda_device(), 0); }

}  // namespace

TEST(DeviceParallelWorker, TensorParallel) {
  OPD_MPI_WORKER_ONLY();
  take_my_gpu();
  const auto world = opd::comm::Communicator::world();
  ASSERT_EQ(world.size(), 2);
  const opd::parallel::TensorParallel tp(world);
  const int r = tp.rank();

  // Row-parallel sum, f32: the device result equals the host result exactly.
  Tensor host = random_tensor({37, 19}, 10 + r);
  Tensor dev = to_device(host);
  tp.allreduce_sum(host);
  tp.allreduce_sum(dev);
  EXPECT_EQ(to_host(dev).to_vector(), host.to_vector());
  EXPECT_TRUE(world.has_device_group());

  // bf16: small integers are exact, so rank 0's i plus rank 1's 2i is 3i.
  Tensor bf = Tensor::empty({64}, DType::BF16);
  for (int i = 0; i < 64; ++i) {
    const float v = static_cast<float>((r + 1) * i);
    uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    bf.data<uint16_t>()[i] = static_cast<uint16_t>(bits >> 16);  // exact for these integers
  }
  Tensor bf_dev = to_device(bf);
  tp.allreduce_sum(bf_dev);
  const Tensor bf_back = to_host(bf_dev);
  for (int i = 0; i < 64; ++i) {
    const uint32_t bits = static_cast<uint32_t>(bf_back.data<uint16_t>()[i]) << 16;
    float v = 0;
    std::memcpy(&v, &bits, sizeof v);
    EXPECT_EQ(v, static_cast<float>(3 * i)) << i;
  }

  // Vocabulary columns: gather [M, C] from both ranks into [M, 2C], and take them back.
  const Tensor local = random_tensor({6, 5}, 20 + r);
  Tensor full_host = Tensor::empty({6, 10});
  tp.gather_columns(local, full_host);
  Tensor full_dev = to_device(Tensor::zeros({6, 10}));
  tp.gather_columns(to_device(local), full_dev);
  EXPECT_EQ(to_host(full_dev).to_vector(), full_host.to_vector());
  Tensor mine_host = Tensor::empty({6, 5});
  tp.take_columns(full_host, mine_host);
  EXPECT_EQ(mine_host.to_vector(), local.to_vector());
  Tensor mine_dev = to_device(Tensor::zeros({6, 5}));
  tp.take_columns(full_dev, mine_dev);
  EXPECT_EQ(to_host(mine_dev).to_vector(), local.to_vector());
}

TEST(DeviceParallel, TensorParallelOnTwoGpusEqualsHost) {
  OPD_NEEDS_TWO_GPUS();
  EXPECT_MPI_WORKERS_PASS(2, "DeviceParallelWorker.TensorParallel");
}

TEST(DeviceParallelWorker, Pipeline) {
  OPD_MPI_WORKER_ONLY();
  take_my_gpu();
  const opd::parallel::PipelineParallel pp(opd::comm::Communicator::world());
  ASSERT_EQ(pp.size(), 2);
  // Micro-batch i's activation and gradient; one large enough that NCCL cannot deliver it
  // before the receiver is there.
  const auto rows = [](int i) { return i == 2 ? int64_t(65536) : int64_t(3 + i); };
  const auto act = [&](int i) { return random_tensor({rows(i), 32}, 100 + i); };
  const auto grad = [&](int i) { return random_tensor({rows(i), 32}, 200 + i); };
  const int n = 5;
  auto forward = [&](int i) {
    if (pp.first()) {
      Tensor x = to_device(act(i));
      pp.send_next(x);
      opd::backend::fill(x, -1.0f);  // the send copied it: overwriting must not matter
    } else {
      Tensor x = to_device(Tensor::zeros({rows(i), 32}));
      pp.recv_prev(x);
      EXPECT_EQ(to_host(x).to_vector(), act(i).to_vector()) << "activation " << i;
    }
  };
  auto backward = [&](int i) {
    if (pp.last()) {
      Tensor dx = to_device(grad(i));
      pp.send_prev(dx);
      opd::backend::fill(dx, -2.0f);
    } else {
      Tensor dx = to_device(Tensor::zeros({rows(i), 32}));
      pp.recv_next(dx);
      EXPECT_EQ(to_host(dx).to_vector(), grad(i).to_vector()) << "gradient " << i;
    }
  };
  opd::parallel::one_forward_one_backward(pp, n, forward, backward);
  // A forward-only pass (its sends start at once, several in flight, the large one among
  // them) ending in a host transfer from the last stage (as in decoding).
  for (int i = 1; i < 4; ++i) forward(i);
  int32_t token = pp.last() ? 4242 : 0;
  if (pp.last())
    pp.send_from_last(&token, sizeof token);
  else
    pp.recv_from_last(&token, sizeof token);
  EXPECT_EQ(token, 4242);
  pp.wait_sends();
}

TEST(DeviceParallel, PipelineOnTwoGpusDeliversInOrder) {
  OPD_NEEDS_TWO_GPUS();
  EXPECT_MPI_WORKERS_PASS(2, "DeviceParallelWorker.Pipeline");
}

TEST(DeviceParallelWorker, GradientBuckets) {
  OPD_MPI_WORKER_ONLY();
  take_my_gpu();
  const auto world = opd::comm::Communicator::world();
  const std::vector<int64_t> sizes = {5, 300, 7, 1000, 64, 3};
  std::vector<Tensor> g;
  std::vector<Tensor*> ptrs;
  for (int64_t n : sizes) g.push_back(to_device(Tensor::zeros({n})));
  for (auto& t : g) ptrs.push_back(&t);
  opd::parallel::GradientBuckets buckets(ptrs, world, 256 * 4);  // 256 floats per bucket
  EXPECT_EQ(buckets.buckets(), 3);
  for (int update = 0; update < 2; ++update) {
    // Parameter p's gradient on rank r: element j = (r + 1) (p + 1) + j + 10 update.
    for (std::size_t p = 0; p < sizes.size(); ++p) {
      Tensor h = Tensor::empty({sizes[p]});
      for (int64_t j = 0; j < sizes[p]; ++j)
        h.data<float>()[j] = static_cast<float>((world.rank() + 1) * (p + 1) + j + 10 * update);
      opd::backend::copy(h, g[p]);
    }
    // Rank 0 reports in backward order (its sums start during the "backward"), rank 1 nothing.
    if (world.rank() == 0)
      for (std::size_t p = sizes.size(); p-- > 0;) buckets.ready(p);
    buckets.finish();
    for (std::size_t p = 0; p < sizes.size(); ++p) {
      const Tensor back = to_host(g[p]);
      for (int64_t j = 0; j < sizes[p]; ++j)
        ASSERT_EQ(back.data<float>()[j], static_cast<float>(3 * (p + 1) + 2 * (j + 10 * update)))
            << "update " << update << " parameter " << p << " element " << j;
    }
  }
}

TEST(DeviceParallel, GradientBucketsOnTwoGpusSum) {
  OPD_NEEDS_TWO_GPUS();
  EXPECT_MPI_WORKERS_PASS(2, "DeviceParallelWorker.GradientBuckets");
}
