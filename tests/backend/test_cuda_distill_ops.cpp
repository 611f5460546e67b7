// The CUDA distillation, vocabulary-shard and sampling ops against the CPU backend: the
// distill_suite.hpp checks with the logits (and outputs) on the GPU, fp32 results within 1e-5
// relative. The small inputs travel both ways the ops accept: token_stats gets its ids and
// per-row tensors on the device, objective_rows and the shard ops get them from the host (and
// the shard rows' host vectors) to upload. Runs on a GPU machine (tests/gpu/run.sh); skips where
// opd was built without CUDA or no device is present.
#include <gtest/gtest.h>

#include "distill_suite.hpp"
#include "testing/gpu.hpp"

using namespace opd::testing::distill_suite;
using opd::core::Device;
using opd::testing::to_gpu;

namespace {

class Gpu final : public DistillImpl {
 public:
  void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                   const Tensor& uniforms, Tensor& ids, Tensor& logprobs,
                   int64_t vocab_limit) override {
    Tensor gi = to_gpu(ids), gl = to_gpu(logprobs);
    ops::sample_rows(to_gpu(logits), temperature, top_k, top_p, to_gpu(uniforms), gi, gl,
                     vocab_limit);
    ops::copy(gi, ids);
    ops::copy(gl, logprobs);
  }
  void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                   TokenStats& out, const ShardRows* shard) override {
    TeacherRows t = teacher;
    for (Tensor* x : {&t.logq_y, &t.entropy_q, &t.student_ids, &t.logq_student_ids,
                      &t.teacher_ids, &t.logq_teacher_ids, &t.logits})
      *x = to_gpu(*x);
    TokenStats d;
    std::vector<Tensor*> h = fields(out), g = fields(d);
    for (std::size_t i = 0; i < h.size(); ++i) *g[i] = to_gpu(*h[i]);
    ops::token_stats(to_gpu(z), t, to_gpu(y), diag_k, d, shard);
    for (std::size_t i = 0; i < h.size(); ++i)
      if (h[i]->defined()) ops::copy(*g[i], *h[i]);
  }
  void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                      const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                      const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                      const ShardRows* shard) override {
    TeacherRows t = teacher;
    t.logits = to_gpu(t.logits);
    Tensor gl = to_gpu(loss), gd = to_gpu(dz);
    ops::objective_rows(to_gpu(z), t, y, logmu, adv, baseline, w, args, gl, gd, shard);
    ops::copy(gl, loss);
    ops::copy(gd, dz);
  }
  void shard_partials(const Tensor& z, const VocabRange& range, const Tensor& ids,
                      const Tensor* tail_ids, ShardPartials& out) override {
    ops::shard_partials(to_gpu(z), range, ids, tail_ids, out);
  }
  void shard_topk(const Tensor& x, const VocabRange& range, int64_t k, std::vector<int32_t>& ids,
                  std::vector<double>& values) override {
    ops::shard_topk(to_gpu(x), range, k, ids, values);
  }
  void shard_full_sums(const Tensor& z, const Tensor& u, const std::vector<double>& lse,
                       const std::vector<double>& lse_u, double beta, ShardSums& out) override {
    ops::shard_full_sums(to_gpu(z), to_gpu(u), lse, lse_u, beta, out);
  }
  std::vector<double> shard_values(const Tensor& x, const VocabRange& range,
                                   const Tensor& ids) override {
    return ops::shard_values(to_gpu(x), range, to_gpu(ids));
  }
};

}  // namespace

TEST(CudaDistillOps, SamplingMatchesTheCpu) {
  REQUIRE_GPU();
  Gpu impl;
  check_sampling(impl);
}

TEST(CudaDistillOps, SamplingLargeVocabulary) {
  REQUIRE_GPU();
  // A realistic vocabulary: the crossing searches over 151936 columns.
  const int64_t B = 8, V = 151936;
  const Tensor x = random_tensor({B, V}, 42, -8.0f, 8.0f);
  const Tensor u = random_tensor({B}, 43, 0.0f, 1.0f);
  Gpu impl;
  for (auto [t, k, p] : {std::tuple{1.0f, 0, 1.0f}, std::tuple{0.8f, 50, 0.95f},
                         std::tuple{1.2f, 0, 0.9f}, std::tuple{0.0f, 0, 1.0f}}) {
    Tensor ids = Tensor::empty({B}, DType::I32), lp = Tensor::empty({B});
    Tensor ids_c = Tensor::empty({B}, DType::I32), lp_c = Tensor::empty({B});
    impl.sample_rows(x, t, k, p, u, ids, lp, 0);
    ops::sample_rows(x, t, k, p, u, ids_c, lp_c);
    EXPECT_EQ(ids.to_vector_i32(), ids_c.to_vector_i32());
    EXPECT_TRUE(all_close(lp, to_double(lp_c), 1e-5, 1e-5));
  }
  // Qwen2.5's padded embedding: 151665 tokenizer ids, the rest of the rows given the largest
  // logits; nothing past the limit may be chosen.
  const int64_t limit = 151665;
  Tensor xp = x.clone();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = limit; j < V; ++j) xp.data<float>()[b * V + j] = 20.0f;
  for (auto [t, k, p] : {std::tuple{1.0f, 0, 1.0f}, std::tuple{0.8f, 50, 0.95f},
                         std::tuple{0.0f, 0, 1.0f}}) {
    Tensor ids = Tensor::empty({B}, DType::I32), lp = Tensor::empty({B});
    Tensor ids_c = Tensor::empty({B}, DType::I32), lp_c = Tensor::empty({B});
    impl.sample_rows(xp, t, k, p, u, ids, lp, limit);
    ops::sample_rows(xp, t, k, p, u, ids_c, lp_c, limit);
    EXPECT_EQ(ids.to_vector_i32(), ids_c.to_vector_i32());
    for (int32_t id : ids.to_vector_i32()) EXPECT_LT(id, limit);
    EXPECT_TRUE(all_close(lp, to_double(lp_c), 1e-5, 1e-5));
  }
}

TEST(CudaDistillOps, TokenStatsMatchTheCpu) {
  REQUIRE_GPU();
  Gpu impl;
  check_token_stats(impl);
}

TEST(CudaDistillOps, ObjectivesMatchTheCpu) {
  REQUIRE_GPU();
  Gpu impl;
  check_objectives(impl);
}

TEST(CudaDistillOps, ShardOpsMatchTheCpu) {
  REQUIRE_GPU();
  Gpu impl;
  check_shard_ops(impl);
}

TEST(CudaDistillOps, ShardedRowsMatchTheCpu) {
  REQUIRE_GPU();
  Gpu impl;
  check_sharded_rows(impl);
}

TEST(CudaDistillOps, LargeRowsMatchTheCpu) {
  REQUIRE_GPU();
  // Rows longer than a block's stride many times over, in every signal mode.
  const Problem P = make_problem(990, 3, 50000, 8);
  Gpu impl;
  for (Signal mode : {Signal::Sampled, Signal::TopK, Signal::Full})
    expect_stats_equal(impl, P.zt, teacher_rows(P, mode), P.y, 16, nullptr, P.n);
  for (const ObjCase& c : objective_cases()) {
    SCOPED_TRACE(describe(c));
    expect_objective_equal(impl, P, c, P.zt, teacher_rows(P, c.mode, c.full_teacher_ids), nullptr);
  }
}
