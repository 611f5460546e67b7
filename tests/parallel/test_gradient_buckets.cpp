// Bucketed data-parallel gradient reduction (mpirun -np 3): buckets of the requested size in
// reverse parameter order; each bucket's sum is right whether its parameters were reported ready
// during the backward (in any order), partly, or not at all (a rank with no backward pass), and
// the next update starts clean.
#include <gtest/gtest.h>

#include "comm/communicator.hpp"
#include "parallel/gradient_buckets.hpp"
#include "testing/mpi_worker.hpp"

using opd::core::Tensor;

namespace {

// Parameter p's gradient on rank r at update u: element j = (r + 1) * (p + 1) + j + 10 u.
void fill(std::vector<Tensor>& g, int rank, int update) {
  for (std::size_t p = 0; p < g.size(); ++p)
    for (int64_t j = 0; j < g[p].numel(); ++j)
      g[p].data<float>()[j] = static_cast<float>((rank + 1) * (p + 1) + j + 10 * update);
}

}  // namespace

TEST(GradientBucketsWorker, SumsWhateverWasReported) {
  OPD_MPI_WORKER_ONLY();
  const auto world = opd::comm::Communicator::world();
  const std::vector<int64_t> sizes = {5, 300, 7, 1000, 64, 3};
  std::vector<Tensor> g;
  std::vector<Tensor*> ptrs;
  for (int64_t n : sizes) g.push_back(Tensor::empty({n}));
  for (auto& t : g) ptrs.push_back(&t);
  opd::parallel::GradientBuckets buckets(ptrs, world, 256 * 4);  // 256 floats per bucket
  // From the last parameter: {5, 4, 3} (3 + 64 + 1000 floats), {2, 1}, {0}.
  EXPECT_EQ(buckets.buckets(), 3);
  for (int update = 0; update < 2; ++update) {
    fill(g, world.rank(), update);
    // Rank 0 reports in backward order, rank 1 a part in another order, rank 2 nothing.
    if (world.rank() == 0)
      for (std::size_t p = sizes.size(); p-- > 0;) buckets.ready(p);
    if (world.rank() == 1)
      for (std::size_t p : {1, 5, 4}) buckets.ready(p);
    buckets.finish();
    for (std::size_t p = 0; p < sizes.size(); ++p)
      for (int64_t j = 0; j < sizes[p]; j += 7)
        ASSERT_EQ(g[p].data<float>()[j], static_cast<float>(6 * (p + 1) + 3 * (j + 10 * update)))
            << "update " << update << " parameter " << p << " element " << j;
  }
}

TEST(GradientBuckets, ThreeRanksSumBucketByBucket) {
  EXPECT_MPI_WORKERS_PASS(3, "GradientBucketsWorker.SumsWhateverWasReported");
}
