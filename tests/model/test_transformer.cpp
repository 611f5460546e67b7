// Transformer: whole-model gradient check against finite differences, incremental decode against
// the full forward, batch independence of generation, and the optimizer's schedules.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "model/generator.hpp"
#include "model/lm_loss.hpp"
#include "model/optimizer.hpp"
#include "model/transformer.hpp"
#include "testing/reference.hpp"

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::model;

namespace {

ModelConfig tiny(bool bias, bool qk_norm, bool tied) {
  ModelConfig c;
  c.vocab_size = 13;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;  // q_size 16 != d_model: the projections are not square
  c.d_ff = 12;
  c.max_seq_len = 32;
  c.qkv_bias = bias;
  c.qk_norm = qk_norm;
  c.tie_embeddings = tied;
  c.init_std = 0.3;  // large enough that every path carries gradient
  return c;
}

Tensor ids_tensor(const std::vector<int32_t>& v, int64_t B, int64_t T) {
  return Tensor::from_vector(v, {B, T});
}

struct Batch {
  Tensor ids, pos, targets;
};

Batch random_batch(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  std::mt19937 gen(static_cast<unsigned>(seed));
  std::vector<int32_t> ids(static_cast<std::size_t>(B * T)), tg(ids.size());
  for (auto& x : ids) x = static_cast<int32_t>(gen() % V);
  for (std::size_t i = 0; i < tg.size(); ++i) tg[i] = (i % 5 == 3) ? -1 : static_cast<int32_t>(gen() % V);
  return {ids_tensor(ids, B, T), causal_positions(B, T), ids_tensor(tg, B, T)};
}

double loss_of(Transformer& m, const Batch& b) {
  return lm_cross_entropy(m, b.ids, b.pos, b.targets, 0.0f, 5).sum;
}

}  // namespace

class ModelGradient : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {};

TEST_P(ModelGradient, MatchesFiniteDifferences) {
  auto [bias, qk_norm, tied] = GetParam();
  Transformer m(tiny(bias, qk_norm, tied));
  m.init_weights(7);
  if (bias)  // biases start at 0; make them non-trivial
    for (auto& p : m.params().all())
      if (p.name.find("bias") != std::string::npos)
        for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<float>()[i] = 0.1f * std::sin(float(i));
  Batch b = random_batch(2, 6, 13, 3);
  m.params().zero_grad();
  LossSum l = lm_cross_entropy(m, b.ids, b.pos, b.targets, 1.0f, 5);  // grad of the sum
  ASSERT_GT(l.count, 0);
  // Central differences in float32 arithmetic of the loss (accumulated in double): compare a
  // spread of entries of every parameter.
  int checked = 0;
  for (auto& p : m.params().all()) {
    float* w = p.value.data<float>();
    const float* g = p.grad.data<float>();
    const int64_t n = p.value.numel();
    for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 5)) {
      const float w0 = w[i];
      // Small enough for the curvature of QK-norm, large enough for float32 round-off.
      const float h = 3e-3f;
      w[i] = w0 + h;
      const double lp = loss_of(m, b);
      w[i] = w0 - h;
      const double lm = loss_of(m, b);
      w[i] = w0;
      const double fd = (lp - lm) / (2.0 * h);
      EXPECT_NEAR(g[i], fd, 2e-3 + 2e-2 * std::abs(fd)) << p.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelGradient,
                         ::testing::Values(std::make_tuple(false, false, false),
                                           std::make_tuple(true, false, true),
                                           std::make_tuple(false, true, false),
                                           std::make_tuple(true, true, true)));

TEST(Transformer, IncrementalDecodeMatchesFullForward) {
  ModelConfig c = tiny(true, true, false);
  c.d_model = 16;
  c.vocab_size = 17;
  Transformer m(c);
  m.init_weights(11);
  const int64_t T = 9;
  std::vector<int32_t> seq = {1, 5, 3, 9, 2, 7, 7, 4, 16};
  // Full forward over the whole sequence.
  Tensor h_full = m.forward(ids_tensor(seq, 1, T), causal_positions(1, T), false).clone();
  Tensor full_logits = Tensor::empty({T, c.vocab_size});
  m.logits(h_full, full_logits);
  // Prefill of the first 3 tokens, then one token at a time.
  KVCache cache = m.make_cache(1, T);
  const int64_t P = 3;
  Tensor h = m.forward(ids_tensor({seq.begin(), seq.begin() + P}, 1, P), causal_positions(1, P),
                       false, &cache).clone();
  std::vector<double> got, want;
  Tensor lg = Tensor::empty({P, c.vocab_size});
  m.logits(h, lg);
  for (float x : lg.to_vector()) got.push_back(x);
  for (int64_t t = P; t < T; ++t) {
    Tensor id = ids_tensor({seq[static_cast<std::size_t>(t)]}, 1, 1);
    Tensor pos = ids_tensor({static_cast<int32_t>(t)}, 1, 1);
    Tensor ht = m.forward(id, pos, false, &cache).clone();
    Tensor l1 = Tensor::empty({1, c.vocab_size});
    m.logits(ht, l1);
    for (float x : l1.to_vector()) got.push_back(x);
  }
  for (float x : full_logits.to_vector()) want.push_back(x);
  EXPECT_TRUE(opd::testing::all_close(got, want, 1e-5, 1e-6));
}

TEST(Transformer, BatchedGenerationGivesEachSequenceItsOwnTokens) {
  ModelConfig c = tiny(false, false, true);
  c.d_model = 16;
  c.vocab_size = 20;
  c.max_seq_len = 40;
  Transformer m(c);
  m.init_weights(5);
  std::vector<std::vector<int32_t>> prompts = {{1, 4}, {1, 7, 8, 9, 3, 3}, {1}, {1, 2, 2, 2}};
  std::vector<uint64_t> ids = {10, 11, 12, 13};
  SamplingConfig sc;
  sc.temperature = 1.0f;
  sc.top_p = 0.95f;
  sc.max_new_tokens = 12;
  const int32_t eos = 2;
  auto batched = generate(m, prompts, sc, 99, ids, eos);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    auto alone = generate(m, {prompts[i]}, sc, 99, {ids[i]}, eos);
    EXPECT_EQ(alone[0].tokens, batched[i].tokens) << "sequence " << i;
    ASSERT_EQ(alone[0].logprobs.size(), batched[i].logprobs.size());
    for (std::size_t t = 0; t < alone[0].logprobs.size(); ++t)
      EXPECT_NEAR(alone[0].logprobs[t], batched[i].logprobs[t], 1e-5);
    EXPECT_TRUE(batched[i].stopped || batched[i].tokens.size() == 12u);
  }
  // A different seed gives different samples (the streams are really used).
  auto other = generate(m, prompts, sc, 100, ids, eos);
  int differ = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) differ += other[i].tokens != batched[i].tokens;
  EXPECT_GT(differ, 0);
}

TEST(Transformer, GreedyGenerationFollowsArgmaxOfFullForward) {
  ModelConfig c = tiny(false, false, false);
  c.vocab_size = 15;
  Transformer m(c);
  m.init_weights(3);
  SamplingConfig sc;
  sc.temperature = 0.0f;
  sc.max_new_tokens = 6;
  std::vector<int32_t> prompt = {1, 6, 9};
  auto g = generate(m, {prompt}, sc, 1, {0}, -1);
  ASSERT_EQ(g[0].tokens.size(), 6u);
  std::vector<int32_t> seq = prompt;
  for (int32_t tok : g[0].tokens) {
    const int64_t T = static_cast<int64_t>(seq.size());
    Tensor h = m.forward(ids_tensor(seq, 1, T), causal_positions(1, T), false).clone();
    Tensor lg = Tensor::empty({T, c.vocab_size});
    m.logits(h, lg);
    auto v = lg.to_vector();
    auto last = v.begin() + (T - 1) * c.vocab_size;
    EXPECT_EQ(tok, std::max_element(last, last + c.vocab_size) - last);
    seq.push_back(tok);
  }
}

// A model whose embedding has more rows than the tokenizer has tokens (vocab_limit 12 of 20):
// sampled and greedy tokens stay below the limit; the limit at V changes nothing.
TEST(Transformer, GenerationStaysBelowTheVocabLimit) {
  ModelConfig c = tiny(false, false, false);
  c.vocab_size = 20;
  Transformer m(c);
  m.init_weights(7);
  const int64_t limit = 12;
  const std::vector<std::vector<int32_t>> prompts = {{1, 4}, {1, 7, 8}, {1}, {1, 2, 2, 2}};
  const std::vector<uint64_t> ids = {0, 1, 2, 3};
  SamplingConfig sc;
  sc.temperature = 1.0f;
  sc.max_new_tokens = 12;
  auto count_past = [&](const std::vector<Generation>& gens) {
    int past = 0;
    for (const auto& g : gens)
      for (int32_t t : g.tokens) past += t >= limit;
    return past;
  };
  const auto unrestricted = generate(m, prompts, sc, 3, ids, -1);
  EXPECT_GT(count_past(unrestricted), 0);  // the premise: unrestricted, ids past it occur
  const auto limited = generate(m, prompts, sc, 3, ids, -1, limit);
  EXPECT_EQ(count_past(limited), 0);
  for (const auto& g : limited) EXPECT_EQ(g.tokens.size(), 12u);
  const auto at_v = generate(m, prompts, sc, 3, ids, -1, c.vocab_size);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(at_v[i].tokens, unrestricted[i].tokens);
    EXPECT_EQ(at_v[i].logprobs, unrestricted[i].logprobs);
  }
  // Greedy: the argmax of the full forward's logits over the allowed ids.
  sc.temperature = 0.0f;
  sc.max_new_tokens = 6;
  const auto g = generate(m, {prompts[1]}, sc, 1, {0}, -1, limit);
  std::vector<int32_t> seq = prompts[1];
  for (int32_t tok : g[0].tokens) {
    const int64_t T = static_cast<int64_t>(seq.size());
    Tensor h = m.forward(ids_tensor(seq, 1, T), causal_positions(1, T), false).clone();
    Tensor lg = Tensor::empty({T, c.vocab_size});
    m.logits(h, lg);
    auto v = lg.to_vector();
    auto last = v.begin() + (T - 1) * c.vocab_size;
    EXPECT_EQ(tok, std::max_element(last, last + limit) - last);
    seq.push_back(tok);
  }
  // A tokenizer larger than the model's vocabulary is refused.
  try {
    generate(m, {prompts[0]}, sc, 1, {0}, -1, c.vocab_size + 1);
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.exit_status(), 2);
  }
}

TEST(Transformer, StopTokensEndASequence) {
  ModelConfig c = tiny(false, false, false);
  c.vocab_size = 15;
  Transformer m(c);
  m.init_weights(3);
  SamplingConfig sc;
  sc.temperature = 0.0f;
  sc.max_new_tokens = 8;
  auto free_run = generate(m, {{1, 6, 9}}, sc, 1, {0}, -1);
  ASSERT_EQ(free_run[0].tokens.size(), 8u);
  EXPECT_FALSE(free_run[0].stopped);
  sc.stop_tokens = {free_run[0].tokens[2]};
  auto stopped = generate(m, {{1, 6, 9}}, sc, 1, {0}, -1);
  const auto first = std::find(free_run[0].tokens.begin(), free_run[0].tokens.end(),
                               free_run[0].tokens[2]) - free_run[0].tokens.begin();
  EXPECT_EQ(stopped[0].tokens.size(), static_cast<std::size_t>(first + 1));
  EXPECT_TRUE(stopped[0].stopped);
  EXPECT_EQ(stopped[0].tokens.back(), free_run[0].tokens[2]);
}

TEST(Transformer, PromptLongerThanContextIsAnInputError) {
  ModelConfig c = tiny(false, false, false);
  c.max_seq_len = 4;
  Transformer m(c);
  m.init_weights(1);
  SamplingConfig sc;
  try {
    generate(m, {{1, 2, 3, 4, 5}}, sc, 1, {0}, 2);
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.exit_status(), 2);
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos);
  }
}

TEST(Optimizer, Schedules) {
  OptimConfig c;
  c.lr = 1.0;
  c.warmup = 10;
  c.min_lr_ratio = 0.1;
  EXPECT_NEAR(scheduled_lr(c, 0, 110), 0.1, 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 9, 110), 1.0, 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 50, 110), 1.0, 1e-12);  // constant
  c.schedule = "linear";
  EXPECT_NEAR(scheduled_lr(c, 60, 110), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 110, 110), 0.1, 1e-12);
  c.schedule = "cosine";
  EXPECT_NEAR(scheduled_lr(c, 10, 110), 1.0, 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 60, 110), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 110, 110), 0.1, 1e-12);
}

TEST(Optimizer, ClipsToGlobalNormAndReportsIt) {
  ParamSet ps;
  ps.add("a", {2}, true);
  ps.add("b", {1}, false);
  ps[0].grad.data<float>()[0] = 3;
  ps[0].grad.data<float>()[1] = 0;
  ps[1].grad.data<float>()[0] = 4;
  EXPECT_NEAR(grad_norm(ps), 5.0, 1e-12);
  AdamW opt(ps);
  OptimConfig c;
  c.lr = 0.1;
  c.grad_clip = 1.0;
  c.weight_decay = 0.5;
  EXPECT_NEAR(opt.step(ps, c, 0.1), 5.0, 1e-12);
  // First Adam step moves every coordinate with a non-zero gradient by lr * sign (bias-corrected
  // m / sqrt(v) = g / |g|), whatever the clipping; decay of a zero weight is zero.
  EXPECT_NEAR(ps[0].value.data<float>()[0], -0.1, 1e-5);
  EXPECT_NEAR(ps[0].value.data<float>()[1], 0.0, 1e-7);
  EXPECT_NEAR(ps[1].value.data<float>()[0], -0.1, 1e-5);
  EXPECT_EQ(opt.steps(), 1);
}
