// Tensor and pipeline parallelism of the transformer (mpirun -np 2 and 4): every rank builds the
// whole model and its share of a tp x pp layout (tp fastest) from the same seed; the sharded
// model's loss (micro-batched, 1F1B through the pipeline), gradients (each shard against the
// same slice of the whole model's), gradient norm, logits and sampled tokens must equal the
// whole model's. Covers GQA, QKV bias, QK-norm (shared gains whose gradients are summed over
// the group) and tied and untied embeddings.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "model/generator.hpp"
#include "model/lm_loss.hpp"
#include "model/optimizer.hpp"
#include "model/transformer.hpp"
#include "parallel/pipeline_parallel.hpp"
#include "parallel/tensor_parallel.hpp"
#include "testing/mpi_worker.hpp"
#include "testing/reference.hpp"

using opd::core::Tensor;
using namespace opd::model;
using opd::testing::all_close;
using opd::testing::to_double;

namespace {

ModelConfig tp_model(int64_t kv_heads, bool tied, int64_t layers = 2) {
  ModelConfig c;
  c.vocab_size = 20;
  c.d_model = 16;
  c.n_layers = layers;
  c.n_heads = 4;
  c.n_kv_heads = kv_heads;
  c.head_dim = 6;
  c.d_ff = 24;
  c.max_seq_len = 32;
  c.qkv_bias = true;
  c.qk_norm = true;
  c.tie_embeddings = tied;
  c.init_std = 0.3;
  return c;
}

struct Batch {
  Tensor ids, pos, targets;
};

Batch batch(int64_t B, int64_t T, int64_t V) {
  std::mt19937 gen(7);
  std::vector<int32_t> ids(static_cast<std::size_t>(B * T)), tg(ids.size());
  for (auto& x : ids) x = static_cast<int32_t>(gen() % V);
  for (std::size_t i = 0; i < tg.size(); ++i)
    tg[i] = (i % 5 == 3) ? -1 : static_cast<int32_t>(gen() % V);
  return {Tensor::from_vector(ids, {B, T}), causal_positions(B, T), Tensor::from_vector(tg, {B, T})};
}

// The whole model's tensor `whole` cut to the shard layout of `p`.
std::vector<double> shard_of(const Tensor& whole, const Param& p) {
  Param copy;
  copy.global_shape = p.global_shape;
  copy.shard_axis = p.shard_axis;
  copy.shard_begin = p.shard_begin;
  copy.value = Tensor::empty(p.value.shape());
  take_shard(whole, copy);
  return to_double(copy.value);
}

// This rank's tp x pp shard of cfg (tp varying fastest over the world's ranks) next to the whole
// model, both from seed 11.
void check_matches_whole_model(const ModelConfig& cfg, int tp) {
  const auto world = opd::comm::Communicator::world();
  ASSERT_EQ(world.size() % tp, 0);
  const auto tp_group = world.split(world.rank() / tp, world.rank());
  const auto pp_group = world.split(world.rank() % tp, world.rank());
  Transformer whole(cfg);
  Transformer shard(cfg, opd::parallel::TensorParallel(tp_group),
                    opd::parallel::PipelineParallel(pp_group));
  whole.init_weights(11);
  shard.init_weights(11);
  for (const Param& p : shard.params().all())
    ASSERT_EQ(to_double(p.value), shard_of(whole.params().get(p.name).value, p)) << p.name;

  // 4 rows in 2 micro-batches: through the pipeline in the 1F1B order.
  const Batch b = batch(4, 9, cfg.vocab_size);
  const float g = 1.0f / 20;
  const LossSum lw = lm_cross_entropy(whole, b.ids, b.pos, b.targets, g, 7);
  const LossSum ls = lm_cross_entropy(shard, b.ids, b.pos, b.targets, g, 7, 2);
  EXPECT_EQ(ls.count, lw.count);
  EXPECT_NEAR(ls.sum, lw.sum, 1e-5 * std::abs(lw.sum));
  for (const Param& p : shard.params().all())
    EXPECT_TRUE(all_close(p.grad, shard_of(whole.params().get(p.name).grad, p), 1e-4, 1e-6))
        << p.name;
  const double nw = grad_norm(whole.params()), ns = grad_norm(shard.params());
  EXPECT_NEAR(ns, nw, 1e-5 * nw);

  // Sampling: the same tokens on every stage (every rank of a tp group draws the same uniforms;
  // the last stage sends the tokens to the others).
  SamplingConfig sc;
  sc.temperature = 1.0f;
  sc.max_new_tokens = 12;
  sc.record_topk = 3;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5}, {6, 7, 8, 9, 10}};
  const auto gw = generate(whole, prompts, sc, 5, {0, 1, 2}, -1);
  const auto gs = generate(shard, prompts, sc, 5, {0, 1, 2}, -1);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(gs[i].tokens, gw[i].tokens) << "sequence " << i;
    EXPECT_EQ(gs[i].topk_ids, gw[i].topk_ids) << "sequence " << i;
    ASSERT_EQ(gs[i].logprobs.size(), gw[i].logprobs.size());
    for (std::size_t t = 0; t < gw[i].logprobs.size(); ++t)
      EXPECT_NEAR(gs[i].logprobs[t], gw[i].logprobs[t], 1e-5);
  }
  if (!shard.has_head()) return;

  // Logits of a few rows, gathered over the vocabulary shards.
  const Tensor h_rows = opd::testing::random_tensor({5, cfg.d_model}, 3);
  Tensor lw_out = Tensor::empty({5, cfg.vocab_size}), ls_out = Tensor::empty({5, cfg.vocab_size});
  whole.logits(h_rows, lw_out);
  shard.logits(h_rows, ls_out);
  EXPECT_TRUE(all_close(ls_out, to_double(lw_out), 1e-5, 1e-6));
  // And back through them: dL/dh whole, the head gradient sharded.
  const Tensor dz = opd::testing::random_tensor({5, cfg.vocab_size}, 4);
  whole.params().zero_grad();
  shard.params().zero_grad();
  Tensor dh_w = Tensor::empty({5, cfg.d_model}), dh_s = Tensor::empty({5, cfg.d_model});
  whole.logits_backward(h_rows, dz, dh_w);
  shard.logits_backward(h_rows, dz, dh_s);
  EXPECT_TRUE(all_close(dh_s, to_double(dh_w), 1e-5, 1e-6));
  EXPECT_TRUE(all_close(shard.lm_head().grad, shard_of(whole.lm_head().grad, shard.lm_head()),
                        1e-5, 1e-6));

}

}  // namespace

TEST(ModelParallelWorker, Tp2GqaUntied) {
  OPD_MPI_WORKER_ONLY();
  check_matches_whole_model(tp_model(2, false), 2);
}

TEST(ModelParallelWorker, Tp4MhaTied) {
  OPD_MPI_WORKER_ONLY();
  check_matches_whole_model(tp_model(4, true), 4);
}

TEST(ModelParallelWorker, Pp2ThreeLayers) {
  OPD_MPI_WORKER_ONLY();
  check_matches_whole_model(tp_model(2, false, 3), 1);
}

TEST(ModelParallelWorker, Tp2Pp2) {
  OPD_MPI_WORKER_ONLY();
  check_matches_whole_model(tp_model(2, false, 4), 2);
}

TEST(ModelParallelWorker, Pp4) {
  OPD_MPI_WORKER_ONLY();
  check_matches_whole_model(tp_model(2, false, 5), 1);
}

TEST(ModelParallel, Tp2MatchesWholeModel) { EXPECT_MPI_WORKERS_PASS(2, "ModelParallelWorker.Tp2GqaUntied"); }
TEST(ModelParallel, Tp4MatchesWholeModel) { EXPECT_MPI_WORKERS_PASS(4, "ModelParallelWorker.Tp4MhaTied"); }
TEST(ModelParallel, Pp2MatchesWholeModel) { EXPECT_MPI_WORKERS_PASS(2, "ModelParallelWorker.Pp2ThreeLayers"); }
TEST(ModelParallel, Tp2Pp2MatchesWholeModel) { EXPECT_MPI_WORKERS_PASS(4, "ModelParallelWorker.Tp2Pp2"); }
TEST(ModelParallel, Pp4MatchesWholeModel) { EXPECT_MPI_WORKERS_PASS(4, "ModelParallelWorker.Pp4"); }

TEST(ModelParallel, ShapesThatDoNotSplitAreAnInputError) {
  ModelConfig c = tp_model(2, false);
  try {
    c.check_layout(4, 1, "job.toml: [model.s]", "parallel.student");
    FAIL() << "n_kv_heads = 2 does not divide by 4";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find("n_kv_heads = 2 does not divide by parallel.student.tp = 4"),
              std::string::npos)
        << e.what();
  }
}
