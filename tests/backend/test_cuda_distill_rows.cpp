// The CUDA distillation kernels' row code (src/backend/cuda/*_row.hpp), compiled for the host and
// run with emulated blocks: each row by a few std::threads meeting at a std::barrier where the
// kernel has __syncthreads, with host versions of the block reductions. The preparation code
// (checks and parameter blocks) is the one the .cu files call, with host staging. The
// distill_suite.hpp checks then compare with the CPU backend on every machine, so that the
// kernels' logic (order keys, crossing searches, phases, shard paths) is exercised without a GPU;
// what only a GPU can show (warp shuffles, launch limits) is test_cuda_distill_ops.cpp's.
#include <gtest/gtest.h>

#include <barrier>
#include <cstring>
#include <memory>
#include <thread>

#include "backend/cuda/objective_prepare.hpp"
#include "backend/cuda/sampling_row.hpp"
#include "backend/cuda/shard_row.hpp"
#include "backend/cuda/token_stats_prepare.hpp"
#include "distill_suite.hpp"

namespace rows = opd::backend::cuda::rows;
using namespace opd::testing::distill_suite;
using opd::core::Device;

namespace {

// What the emulated threads of one block share.
struct HostShared {
  explicit HostShared(int threads)
      : T(threads), bar(threads), d(threads), u(threads), m16(16 * threads), c16(16 * threads),
        iv(threads) {}
  int T;
  std::barrier<> bar;
  std::vector<double> d;
  std::vector<uint64_t> u;
  std::vector<double> m16;
  std::vector<int> c16, iv;
  alignas(16) unsigned char slot[rows::kSharedBytes] = {};
};

// The block policy of row_block.hpp over emulated threads; each reduction combines the threads
// in index order.
struct HostBlock {
  HostShared* s;
  int t;
  int tid() const { return t; }
  int size() const { return s->T; }
  void sync() { s->bar.arrive_and_wait(); }
  double sum(double v) {
    s->d[t] = v;
    sync();
    double x = 0.0;
    for (int i = 0; i < s->T; ++i) x += s->d[i];
    sync();
    return x;
  }
  double max(double v) {
    s->d[t] = v;
    sync();
    double x = -rows::kInf;
    for (int i = 0; i < s->T; ++i) x = rows::dmax(x, s->d[i]);
    sync();
    return x;
  }
  uint64_t max_u64(uint64_t v) {
    s->u[t] = v;
    sync();
    uint64_t x = 0;
    for (int i = 0; i < s->T; ++i) x = std::max(x, s->u[i]);
    sync();
    return x;
  }
  void sum16(double* m, int* c) {
    for (int d = 0; d < 16; ++d) {
      s->m16[t * 16 + d] = m[d];
      s->c16[t * 16 + d] = c[d];
    }
    sync();
    for (int d = 0; d < 16; ++d) {
      m[d] = 0.0;
      c[d] = 0;
      for (int i = 0; i < s->T; ++i) {
        m[d] += s->m16[i * 16 + d];
        c[d] += s->c16[i * 16 + d];
      }
    }
    sync();
  }
  int scan(int v, int& total) {
    s->iv[t] = v;
    sync();
    int before = 0;
    total = 0;
    for (int i = 0; i < s->T; ++i) {
      if (i < t) before += s->iv[i];
      total += s->iv[i];
    }
    sync();
    return before;
  }
  template <class T>
  T* shared() {
    static_assert(sizeof(T) <= rows::kSharedBytes);
    return reinterpret_cast<T*>(s->slot);
  }
};

// Runs row(block, params, r) for every row with `threads` emulated threads per block.
template <class Params, class Row>
void emulate(int64_t n, int threads, const Params& P, Row row) {
  for (int64_t r = 0; r < n; ++r) {
    HostShared sh(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        HostBlock b{&sh, t};
        row(b, P, r);
      });
    for (auto& th : pool) th.join();
  }
}

// Host memory standing in for the device: copies of uploads, scratch filled with a pattern that
// reads as NaN doubles and -1 ids, so that a read before a write shows.
class HostStaging final : public opd::backend::cuda::Staging {
 public:
  HostStaging() : Staging(Device::Host) {}

 protected:
  const void* upload(const void* host, std::size_t bytes) override {
    void* p = allocate(bytes);
    if (bytes) std::memcpy(p, host, bytes);
    return p;
  }
  void* allocate(std::size_t bytes) override {
    held_.emplace_back((bytes + 7) / 8 + 1, ~uint64_t(0));
    return held_.back().data();
  }
  void download(void* host, const void* src, std::size_t bytes) override {
    std::memcpy(host, src, bytes);
  }

 private:
  std::vector<std::vector<uint64_t>> held_;
};

// The .cu entry points, with emulated blocks.
class Emulated final : public DistillImpl {
 public:
  explicit Emulated(int threads) : T(threads) {}
  int T;

  void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                   const Tensor& uniforms, Tensor& ids, Tensor& logprobs,
                   int64_t vocab_limit) override {
    HostStaging st;
    const auto P = rows::prepare_sample(st, logits, temperature, top_k, top_p, uniforms, ids,
                                        logprobs, vocab_limit);
    emulate(logits.dim(0), T, P, [](HostBlock& b, const auto& p, int64_t r) { rows::sample_row(b, p, r); });
  }
  void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                   TokenStats& out, const ShardRows* shard) override {
    HostStaging st;
    const auto P = rows::prepare_token_stats(st, z, teacher, y, diag_k, out, shard);
    emulate(z.dim(0), T, P, [](HostBlock& b, const auto& p, int64_t r) { rows::token_stats_row(b, p, r); });
  }
  void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                      const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                      const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                      const ShardRows* shard) override {
    HostStaging st;
    const auto P =
        rows::prepare_objective(st, z, teacher, y, logmu, adv, baseline, w, args, loss, dz, shard);
    emulate(z.dim(0), T, P, [](HostBlock& b, const auto& p, int64_t r) { rows::objective_row(b, p, r); });
  }
  void shard_partials(const Tensor& z, const VocabRange& range, const Tensor& ids,
                      const Tensor* tail_ids, ShardPartials& out) override {
    HostStaging st;
    const auto P = rows::prepare_partials(st, z, range, ids, tail_ids);
    emulate(P.n, T, P, [](HostBlock& b, const auto& p, int64_t r) { rows::partials_row(b, p, r); });
    rows::fetch_partials(st, P, out);
  }
  void shard_topk(const Tensor& x, const VocabRange& range, int64_t k, std::vector<int32_t>& ids,
                  std::vector<double>& values) override {
    HostStaging st;
    const auto P = rows::prepare_topk(st, x, range, k);
    const int64_t n = x.dim(0);
    ids.assign(static_cast<std::size_t>(n * k), -1);
    values.assign(static_cast<std::size_t>(n * k), -rows::kInf);
    if (k == 0) return;
    emulate(n, T, P, [](HostBlock& b, const auto& p, int64_t r) { rows::topk_row(b, p, r); });
    st.fetch(ids, static_cast<const int32_t*>(P.ids));
    st.fetch(values, static_cast<const double*>(P.values));
  }
  void shard_full_sums(const Tensor& z, const Tensor& u, const std::vector<double>& lse,
                       const std::vector<double>& lse_u, double beta, ShardSums& out) override {
    HostStaging st;
    const auto P = rows::prepare_full_sums(st, z, u, lse, lse_u, beta);
    emulate(P.n, T, P, [](HostBlock& b, const auto& p, int64_t r) { rows::full_sums_row(b, p, r); });
    std::vector<double>* dst[4] = {&out.kl_pq, &out.kl_qp, &out.jsd, &out.jsd_pg};
    for (int i = 0; i < 4; ++i) {
      dst[i]->assign(static_cast<std::size_t>(P.n), 0.0);
      st.fetch(*dst[i], static_cast<const double*>(P.out + i * P.n));
    }
  }
  std::vector<double> shard_values(const Tensor& x, const VocabRange& range,
                                   const Tensor& ids) override {
    std::vector<double> out(static_cast<std::size_t>(ids.numel()));
    for (int64_t i = 0; i < ids.numel(); ++i)
      out[i] = rows::shard_value(x.data<float>(), x.dim(1), range.begin, ids.data<int32_t>(),
                                 ids.dim(1), i);
    return out;
  }
};

}  // namespace

TEST(CudaDistillRows, OrderKeyIsTheTopKOrder) {
  // Larger first, ties (including -0 and +0) to the lower id, NaN as -inf.
  EXPECT_GT(rows::order_key(2.0f, 5), rows::order_key(1.0f, 0));
  EXPECT_GT(rows::order_key(1.0f, 3), rows::order_key(1.0f, 4));
  EXPECT_GT(rows::order_key(-0.0f, 1), rows::order_key(0.0f, 2));
  EXPECT_GT(rows::order_key(0.0f, 1), rows::order_key(-0.0f, 2));
  EXPECT_GT(rows::order_key(-1e-30f, 0), rows::order_key(-1.0f, 0));
  EXPECT_GT(rows::order_key(-INFINITY, 0), rows::order_key(NAN, 1));
  EXPECT_GT(rows::order_key(NAN, 0), rows::order_key(-INFINITY, 1));
  EXPECT_GT(rows::order_key(INFINITY, 9), rows::order_key(3e38f, 0));
  for (int32_t id : {0, 1, 77, 2147483646}) EXPECT_EQ(rows::key_id(rows::order_key(0.5f, id)), id);
}

TEST(CudaDistillRows, SamplingMatchesTheCpu) {
  for (int threads : {1, 3}) {
    Emulated impl(threads);
    check_sampling(impl);
  }
}

TEST(CudaDistillRows, TokenStatsMatchTheCpu) {
  Emulated impl(3);
  check_token_stats(impl);
}

TEST(CudaDistillRows, ObjectivesMatchTheCpu) {
  Emulated impl(3);
  check_objectives(impl);
}

TEST(CudaDistillRows, ShardOpsMatchTheCpu) {
  Emulated impl(3);
  check_shard_ops(impl);
}

TEST(CudaDistillRows, ShardedRowsMatchTheCpu) {
  Emulated impl(3);
  check_sharded_rows(impl);
}

TEST(CudaDistillRows, GradientMayOverwriteTheLogits) {
  const Problem P = make_problem(900, 4, 20, 3);
  for (const ObjCase& c : objective_cases()) {
    SCOPED_TRACE(describe(c));
    ObjectiveArgs a = c.args;
    a.use_ratio = c.extra == Extra::Ratio;
    const Tensor none;
    const TeacherRows t = teacher_rows(P, c.mode, c.full_teacher_ids);
    Tensor loss = Tensor::empty({P.n}), dz = Tensor::empty({P.n, P.V}), loss2 = Tensor::empty({P.n});
    ops::objective_rows(P.zt, t, P.y, a.use_ratio ? P.logmu : none,
                        c.extra == Extra::None ? none : P.adv, P.baseline, P.w, a, loss, dz);
    Tensor z = P.zt.clone();
    Emulated(3).objective_rows(z, t, P.y, a.use_ratio ? P.logmu : none,
                               c.extra == Extra::None ? none : P.adv, P.baseline, P.w, a, loss2, z,
                               nullptr);
    EXPECT_TRUE(close_or_nan(to_double(z), to_double(dz)));
    EXPECT_TRUE(close_or_nan(to_double(loss2), to_double(loss)));
  }
}

TEST(CudaDistillRows, MisuseIsRefused) {
  const Problem P = make_problem(910, 3, 10, 2);
  Emulated impl(2);
  Tensor ids = Tensor::empty({P.n}, DType::I32), lp = Tensor::empty({P.n});
  Tensor bad_u = Tensor::from_vector(std::vector<float>{0.1f, 1.0f, 0.2f}, {P.n});
  EXPECT_THROW(impl.sample_rows(P.zt, 1.0f, 0, 1.0f, bad_u, ids, lp, 0), opd::Error);
  const Tensor good_u = Tensor::from_vector(std::vector<float>{0.1f, 0.5f, 0.2f}, {P.n});
  EXPECT_NO_THROW(impl.sample_rows(P.zt, 1.0f, 0, 1.0f, good_u, ids, lp, P.V));
  EXPECT_THROW(impl.sample_rows(P.zt, 1.0f, 0, 1.0f, good_u, ids, lp, P.V + 1), opd::Error);
  EXPECT_THROW(impl.sample_rows(P.zt, 1.0f, 0, 1.0f, good_u, ids, lp, -1), opd::Error);
  ObjectiveArgs a;
  a.kind = ObjectiveKind::FullRkl;
  Tensor loss = Tensor::empty({P.n}), dz = Tensor::empty({P.n, P.V}), none;
  EXPECT_THROW(impl.objective_rows(P.zt, teacher_rows(P, Signal::TopK), P.y, none, none, none,
                                   P.w, a, loss, dz, nullptr),
               opd::Error);
  Tensor y_bad = Tensor::from_vector(std::vector<int32_t>{0, 10, 1}, {P.n});
  TokenStats st = all_stats(P.n);
  EXPECT_THROW(impl.token_stats(P.zt, teacher_rows(P, Signal::Full), y_bad, 2, st, nullptr),
               opd::Error);
}
