// Checkpoints across layouts (mpirun -np 4): a model and its AdamW state written collectively at
// tp2 x pp2 (each rank its hyperslabs of the global datasets) load at tp1 (one process) and at
// tp4, giving the logits the writers computed; the optimizer moments read back as the same
// global tensors whatever the layout.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "comm/communicator.hpp"
#include "comm/mpi_native.hpp"
#include "distill/dp_optimizer.hpp"
#include "distill/model_io.hpp"
#include "io/checkpoint.hpp"
#include "model/lm_loss.hpp"
#include "model/param_specs.hpp"
#include "testing/mpi_worker.hpp"
#include "testing/reference.hpp"

using opd::core::Tensor;
using namespace opd;
using opd::testing::all_close;
using opd::testing::to_double;
namespace fs = std::filesystem;

namespace {

model::ModelConfig four_layer_model() {
  model::ModelConfig c;
  c.vocab_size = 24;
  c.d_model = 16;
  c.n_layers = 4;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.d_ff = 32;
  c.max_seq_len = 16;
  c.qk_norm = true;
  c.init_std = 0.2;
  return c;
}

const Tensor& probe_ids() {
  static const Tensor ids = opd::testing::random_ids({2, 7}, 24, 5);
  return ids;
}

// Logits [14, V] of the probe batch (every stage runs the forward; the last stage has them).
Tensor probe_logits(model::Transformer& m) {
  const Tensor& h = m.forward(probe_ids(), model::causal_positions(2, 7), false);
  m.pipeline().wait_sends();
  if (!m.has_head()) return {};
  Tensor out = Tensor::empty({14, m.config().vocab_size});
  m.logits(h, out);
  return out;
}

fs::path dir() { return fs::path(std::getenv("OPD_TEST_DIR")); }

// Each rank's place in a tp x pp grid (tp fastest) of the world.
model::ModelParallel grid(int tp) {
  const auto world = comm::Communicator::world();
  return {parallel::TensorParallel(world.split(world.rank() / tp, world.rank())),
          parallel::PipelineParallel(world.split(world.rank() % tp, world.rank()))};
}

}  // namespace

TEST(CheckpointLayoutsWorker, WriteAtTp2Pp2) {
  OPD_MPI_WORKER_ONLY();
  const auto world = comm::Communicator::world();
  ASSERT_EQ(world.size(), 4);
  model::Transformer m(four_layer_model(), grid(2));
  m.init_weights(3);
  // One optimizer step, so that the weights and moments are not the initial ones.
  const Tensor targets = opd::testing::random_ids({2, 7}, 24, 6);
  model::lm_cross_entropy(m, probe_ids(), model::causal_positions(2, 7), targets, 1.0f / 14, 8, 2);
  distill::DataParallelOptimizer opt(m, comm::Communicator(), false);
  model::OptimConfig oc;
  oc.lr = 1e-2;
  opt.step(oc, oc.lr);
  const Tensor logits = probe_logits(m);
  if (m.has_head() && m.tensor_parallel().rank() == 0)
    std::ofstream(dir() / "logits.bin", std::ios::binary)
        .write(static_cast<const char*>(logits.raw()), static_cast<std::streamsize>(logits.bytes()));
  io::CheckpointWriter w((dir() / "ck.h5").string(), comm::mpi_comm(world));
  distill::write_model(w, m, "char");
  opt.write(&w, model::parameter_specs(m.config()));
  w.set_attribute("layout", "tp2.pp2.dp1");
  w.commit();
}

TEST(CheckpointLayoutsWorker, ReadAtTp4) {
  OPD_MPI_WORKER_ONLY();
  const auto path = (dir() / "ck.h5").string();
  auto whole = distill::load_model(path, "char");
  auto tp4 = distill::load_model(path, "char", grid(4));
  std::ifstream in(dir() / "logits.bin", std::ios::binary);
  Tensor written = Tensor::empty({14, 24});
  in.read(static_cast<char*>(written.raw()), static_cast<std::streamsize>(written.bytes()));
  ASSERT_TRUE(in.good());
  const Tensor a = probe_logits(*whole), b = probe_logits(*tp4);
  EXPECT_TRUE(all_close(a, to_double(written), 1e-5, 1e-6));
  EXPECT_TRUE(all_close(b, to_double(written), 1e-5, 1e-6));
  // The moments at tp4 are the slices of the global tensors.
  io::CheckpointReader r(path);
  distill::DataParallelOptimizer opt(*tp4, comm::Communicator(), false);
  opt.read(r);
  EXPECT_EQ(r.read_int("optimizer/step"), 1);
}

TEST(CheckpointLayouts, Tp2Pp2LoadsAtTp1AndTp4) {
  opd::testing::ScratchDir scratch("ck-layouts");
  setenv("OPD_TEST_DIR", scratch.path().c_str(), 1);
  EXPECT_MPI_WORKERS_PASS(4, "CheckpointLayoutsWorker.WriteAtTp2Pp2");
  io::CheckpointReader r((scratch / "ck.h5").string());
  EXPECT_EQ(r.attribute_string("layout"), "tp2.pp2.dp1");
  int moments = 0;
  for (const auto& d : r.list()) {
    r.verify(d.name);  // every dataset whole, checksum included
    moments += d.name.rfind("optimizer/exp_avg", 0) == 0;
  }
  EXPECT_EQ(moments, 2 * static_cast<int>(model::parameter_specs(four_layer_model()).size()));
  EXPECT_MPI_WORKERS_PASS(4, "CheckpointLayoutsWorker.ReadAtTp4");
}
