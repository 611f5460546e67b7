// bf16 mixed precision (Transformer::set_compute_dtype): the same model in bf16 and f32 gives
// losses, gradients and logits within bf16's rounding; the compute copies follow the master
// weights through optimizer steps and loads; bf16 training learns like f32 training.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/ops.hpp"
#include "model/generator.hpp"
#include "model/lm_loss.hpp"
#include "model/optimizer.hpp"
#include "model/transformer.hpp"

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::model;

namespace {

ModelConfig small(bool tied) {
  ModelConfig c;
  c.vocab_size = 61;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.d_ff = 48;
  c.max_seq_len = 64;
  c.qkv_bias = true;
  c.qk_norm = true;
  c.tie_embeddings = tied;
  c.init_std = 0.1;
  return c;
}

struct Batch {
  Tensor ids, pos, targets;
};

// Next-token prediction on a repeating pattern (learnable in a few steps).
Batch pattern_batch(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  std::mt19937 gen(static_cast<unsigned>(seed));
  std::vector<int32_t> ids(static_cast<std::size_t>(B * T)), tg(ids.size());
  for (int64_t b = 0; b < B; ++b) {
    const int32_t start = static_cast<int32_t>(gen() % V);
    for (int64_t t = 0; t < T; ++t) {
      ids[b * T + t] = (start + 3 * t) % V;
      tg[b * T + t] = (start + 3 * (t + 1)) % V;
    }
  }
  return {Tensor::from_vector(ids, {B, T}), causal_positions(B, T), Tensor::from_vector(tg, {B, T})};
}

double rel_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<float>()[i], y = b.data<float>()[i];
    num += (x - y) * (x - y);
    den += y * y;
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

class MixedPrecision : public ::testing::TestWithParam<bool> {};

TEST_P(MixedPrecision, LossAndGradientsWithinBf16RoundingOfF32) {
  const bool tied = GetParam();
  Transformer f32(small(tied)), bf16(small(tied));
  f32.init_weights(3);
  bf16.init_weights(3);
  bf16.set_compute_dtype(DType::BF16);
  ASSERT_EQ(bf16.compute_dtype(), DType::BF16);
  const Batch b = pattern_batch(3, 16, 61, 1);
  f32.params().zero_grad();
  bf16.params().zero_grad();
  const LossSum lf = lm_cross_entropy(f32, b.ids, b.pos, b.targets, 1.0f, 16);
  const LossSum lb = lm_cross_entropy(bf16, b.ids, b.pos, b.targets, 1.0f, 16);
  ASSERT_EQ(lf.count, lb.count);
  // bf16 keeps 8 significant bits: relative rounding 2^-9 per operand. The loss moves by far less
  // than 1%, but it does move (the GEMMs really ran on rounded operands).
  EXPECT_NEAR(lb.sum / lb.count, lf.sum / lf.count, 1e-2 * lf.sum / lf.count);
  EXPECT_NE(lb.sum, lf.sum);
  for (std::size_t i = 0; i < f32.params().size(); ++i) {
    const Param& pf = f32.params()[i];
    const Param& pb = bf16.params()[i];
    ASSERT_EQ(pf.name, pb.name);
    EXPECT_LT(rel_l2(pb.grad, pf.grad), 3e-2) << pf.name;
    // GEMM weights only: the matrices, but not an untied embedding table (the lookup reads f32).
    EXPECT_EQ(pb.compute.defined(),
              pb.value.ndim() == 2 && (tied || pf.name != "model.embed_tokens.weight"))
        << pf.name;
    EXPECT_EQ(pb.value.dtype(), DType::F32);  // the masters stay f32
  }
}

TEST_P(MixedPrecision, LogitsWithinBf16RoundingOfF32) {
  Transformer f32(small(GetParam())), bf16(small(GetParam()));
  f32.init_weights(4);
  bf16.init_weights(4);
  bf16.set_compute_dtype(DType::BF16);
  const Batch b = pattern_batch(2, 9, 61, 2);
  const Tensor hf = f32.forward(b.ids, b.pos, false).clone();
  const Tensor hb = bf16.forward(b.ids, b.pos, false).clone();
  Tensor zf = Tensor::empty({18, 61}), zb = Tensor::empty({18, 61});
  f32.logits(hf, zf);
  bf16.logits(hb, zb);
  EXPECT_LT(rel_l2(hb, hf), 2e-2);
  EXPECT_LT(rel_l2(zb, zf), 2e-2);
  EXPECT_GT(rel_l2(zb, zf), 0.0);
}

INSTANTIATE_TEST_SUITE_P(TiedAndUntied, MixedPrecision, ::testing::Bool());

TEST(MixedPrecisionWeights, ComputeCopiesFollowOptimizerSteps) {
  // After an AdamW step the bf16 model must compute with the new weights: its loss equals that of
  // a fresh bf16 model given the same f32 masters.
  Transformer m(small(false));
  m.init_weights(5);
  m.set_compute_dtype(DType::BF16);
  const Batch b = pattern_batch(2, 12, 61, 3);
  AdamW opt(m.params());
  OptimConfig oc;
  oc.lr = 1e-2;
  m.params().zero_grad();
  lm_cross_entropy(m, b.ids, b.pos, b.targets, 1.0f, 16);
  opt.step(m.params(), oc, oc.lr);
  const double after = lm_cross_entropy(m, b.ids, b.pos, b.targets, 0.0f, 16).sum;

  Transformer fresh(small(false));
  for (std::size_t i = 0; i < m.params().size(); ++i)
    opd::backend::copy(m.params()[i].value, fresh.params()[i].value);
  fresh.set_compute_dtype(DType::BF16);
  EXPECT_EQ(lm_cross_entropy(fresh, b.ids, b.pos, b.targets, 0.0f, 16).sum, after);

  // Writing masters without saying so leaves the GEMMs' copies stale (the weights only GEMMs
  // read are scaled here: not the embedding table, which the lookup reads in f32, nor norm gains
  // and biases); values_changed() refreshes them.
  for (auto& p : m.params().all())
    if (p.compute.defined() && p.name != "model.embed_tokens.weight")
      opd::backend::scale(p.value, 0.5f);
  EXPECT_EQ(lm_cross_entropy(m, b.ids, b.pos, b.targets, 0.0f, 16).sum, after);
  m.params().values_changed();
  EXPECT_NE(lm_cross_entropy(m, b.ids, b.pos, b.targets, 0.0f, 16).sum, after);
}

TEST(MixedPrecisionWeights, Bf16TrainingLearnsLikeF32) {
  double final_loss[2];
  for (int k = 0; k < 2; ++k) {
    Transformer m(small(false));
    m.init_weights(6);
    if (k == 1) m.set_compute_dtype(DType::BF16);
    AdamW opt(m.params());
    OptimConfig oc;
    oc.lr = 3e-3;
    const Batch b = pattern_batch(4, 16, 61, 4);
    double first = 0;
    for (int step = 0; step < 40; ++step) {
      m.params().zero_grad();
      const LossSum l = lm_cross_entropy(m, b.ids, b.pos, b.targets, 1.0f / 64, 16);
      if (step == 0) first = l.sum / l.count;
      final_loss[k] = l.sum / l.count;
      opt.step(m.params(), oc, oc.lr);
    }
    EXPECT_LT(final_loss[k], 0.5 * first) << (k ? "bf16" : "f32");
  }
  EXPECT_NEAR(final_loss[1], final_loss[0], 0.1 * final_loss[0]);
}

TEST(MixedPrecisionWeights, DecodingInBf16MatchesTheFullForward) {
  // Greedy generation with the KV cache in bf16 follows the argmax of the bf16 full forward.
  Transformer m(small(true));
  m.init_weights(8);
  m.set_compute_dtype(DType::BF16);
  SamplingConfig sc;
  sc.temperature = 0.0f;
  sc.max_new_tokens = 6;
  const std::vector<int32_t> prompt = {1, 4, 7, 10};
  const auto gen = generate(m, {prompt}, sc, 1, {0}, -1);
  ASSERT_EQ(gen[0].tokens.size(), 6u);
  std::vector<int32_t> seq = prompt;
  for (int32_t t : gen[0].tokens) {
    const int64_t T = static_cast<int64_t>(seq.size());
    const Tensor h = m.forward(Tensor::from_vector(seq, {1, T}), causal_positions(1, T), false).clone();
    Tensor z = Tensor::empty({1, 61});
    m.logits(h.slice(T - 1, T), z);
    const float* zr = z.data<float>();
    int32_t best = 0;
    for (int32_t v = 1; v < 61; ++v)
      if (zr[v] > zr[best]) best = v;
    // The cache holds keys and values computed one position at a time, the same bf16 GEMMs on
    // the same rounded rows, so the argmax agrees.
    EXPECT_EQ(t, best);
    seq.push_back(t);
  }
}
