// One suite of checks for an implementation of the distillation, vocabulary-shard and sampling
// ops against the CPU backend, run twice: by test_cuda_distill_rows.cpp on the CUDA row code
// executed on the host with emulated block threads (every machine), and by
// test_cuda_distill_ops.cpp on the CUDA backend itself (GPU machines). The implementation takes
// and returns host tensors; each check draws random problems (objective_reference.hpp) and
// compares with ops:: on the host.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "objective_reference.hpp"

namespace opd::testing::distill_suite {

using namespace opd::testing::objective_ref;
using ops::ShardPartials;
using ops::ShardRows;
using ops::ShardSums;
using ops::TokenStats;
using ops::VocabRange;

// The ops under test, on host tensors in and out.
struct DistillImpl {
  virtual ~DistillImpl() = default;
  virtual void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                           const Tensor& uniforms, Tensor& ids, Tensor& logprobs,
                           int64_t vocab_limit) = 0;
  virtual void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                           int diag_k, TokenStats& out, const ShardRows* shard) = 0;
  virtual void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                              const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                              const Tensor& w, const ObjectiveArgs& args, Tensor& loss,
                              Tensor& dz, const ShardRows* shard) = 0;
  virtual void shard_partials(const Tensor& z, const VocabRange& range, const Tensor& ids,
                              const Tensor* tail_ids, ShardPartials& out) = 0;
  virtual void shard_topk(const Tensor& x, const VocabRange& range, int64_t k,
                          std::vector<int32_t>& ids, std::vector<double>& values) = 0;
  virtual void shard_full_sums(const Tensor& z, const Tensor& u, const std::vector<double>& lse,
                               const std::vector<double>& lse_u, double beta, ShardSums& out) = 0;
  virtual std::vector<double> shard_values(const Tensor& x, const VocabRange& range,
                                           const Tensor& ids) = 0;
};

// NaN exactly where the expected value is NaN, else within the tolerance.
inline ::testing::AssertionResult close_or_nan(std::vector<double> a, std::vector<double> b,
                                               double rtol = 1e-5, double atol = 1e-6) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (std::size_t j = 0; j < a.size(); ++j)
    if (std::isnan(b[j]) || std::isnan(a[j])) {
      if (std::isnan(a[j]) != std::isnan(b[j]))
        return ::testing::AssertionFailure() << "element " << j << ": " << a[j] << " vs " << b[j];
      a[j] = b[j] = 0;
    }
  return all_close(a, b, rtol, atol);
}

// ---- sampling ----------------------------------------------------------------------------------

// Rows of several kinds: distinct values, heavy ties (few distinct values), masked entries, a
// NaN, and a fully masked row.
inline Tensor sampling_rows(int64_t B, int64_t V, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> val(-3.0f, 3.0f);
  std::uniform_int_distribution<int> small(-2, 2);
  Tensor x = Tensor::empty({B, V});
  float* p = x.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < V; ++j) {
      float v = val(gen);
      if (b % 4 == 1) v = static_cast<float>(small(gen));  // ties
      if (b % 4 == 2 && j % 3 == 0) v = -INFINITY;
      if (b % 4 == 2 && j == V / 2 && V > 2) v = NAN;
      if (b % 8 == 7) v = -INFINITY;
      if (b % 8 == 3 && j % 5 == 0) v = 0.0f * (j % 2 ? -1.0f : 1.0f);  // -0 and +0 tie
      p[b * V + j] = v;
    }
  return x;
}

// Equal logits: every weight is exactly 1, so the top-p cut and the inverse CDF land exactly on
// cumulative-mass boundaries (>= for the cut, > for the draw) and must agree with the CPU.
inline void check_sampling_boundaries(DistillImpl& impl) {
  const int64_t B = 8, V = 8;
  const Tensor x = Tensor::from_vector(std::vector<float>(B * V, 0.5f), {B, V});
  std::vector<float> uv;
  for (int64_t b = 0; b < B; ++b) uv.push_back(static_cast<float>(b) / B);
  const Tensor u = Tensor::from_vector(uv, {B});
  for (int top_k : {0, 3})
    for (float top_p : {1.0f, 0.5f, 0.25f, 0.75f}) {
      Tensor ids = Tensor::empty({B}, DType::I32), lp = Tensor::empty({B});
      Tensor ids_c = Tensor::empty({B}, DType::I32), lp_c = Tensor::empty({B});
      impl.sample_rows(x, 1.0f, top_k, top_p, u, ids, lp, 0);
      ops::sample_rows(x, 1.0f, top_k, top_p, u, ids_c, lp_c);
      EXPECT_EQ(ids.to_vector_i32(), ids_c.to_vector_i32()) << top_k << " " << top_p;
      EXPECT_TRUE(all_close(lp, to_double(lp_c), 1e-6, 1e-6)) << top_k << " " << top_p;
    }
}

// A vocabulary limit (the tokenizer's size below the model's): the columns past it get the
// row's largest logits, so any step that looked past the limit would choose them. The choice
// must stay below the limit and match the CPU backend's.
inline void check_sampling_limited(DistillImpl& impl) {
  const int64_t B = 16;
  uint64_t seed = 700;
  for (int64_t V : {2, 7, 300, 5000}) {
    const uint64_t rows_seed = seed++;
    const Tensor u = random_tensor({B}, seed++, 0.0f, 1.0f);
    for (int64_t limit : {int64_t{1}, V / 2 + 1, V - 1}) {
      Tensor x = sampling_rows(B, V, rows_seed);
      float* p = x.data<float>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = limit; j < V; ++j) p[b * V + j] = 50.0f + static_cast<float>(j % 3);
      for (float temperature : {0.0f, 1.0f, 1.6f})
        for (int top_k : {0, 1, 5, static_cast<int>(limit), static_cast<int>(V)})
          for (float top_p : {1.0f, 0.9f, 0.3f}) {
            SCOPED_TRACE(::testing::Message() << "V " << V << " limit " << limit << " T "
                                              << temperature << " top_k " << top_k << " top_p "
                                              << top_p);
            Tensor ids = Tensor::empty({B}, DType::I32), lp = Tensor::empty({B});
            Tensor ids_c = Tensor::empty({B}, DType::I32), lp_c = Tensor::empty({B});
            impl.sample_rows(x, temperature, top_k, top_p, u, ids, lp, limit);
            ops::sample_rows(x, temperature, top_k, top_p, u, ids_c, lp_c, limit);
            const std::vector<int32_t> got = ids.to_vector_i32();
            EXPECT_EQ(got, ids_c.to_vector_i32());
            for (int32_t id : got) EXPECT_LT(id, limit);
            EXPECT_TRUE(all_close(lp, to_double(lp_c), 1e-5, 1e-5));
          }
    }
  }
}

inline void check_sampling(DistillImpl& impl) {
  check_sampling_boundaries(impl);
  const int64_t B = 16;
  uint64_t seed = 100;
  for (int64_t V : {1, 2, 7, 300, 5000}) {
    const Tensor x = sampling_rows(B, V, seed++);
    const Tensor u = random_tensor({B}, seed++, 0.0f, 1.0f);
    for (float temperature : {0.0f, 0.7f, 1.0f, 1.6f})
      for (int top_k : {0, 1, 5, static_cast<int>(V) - 1, static_cast<int>(V) + 3})
        for (float top_p : {1.0f, 0.9f, 0.3f, 0.0f}) {
          SCOPED_TRACE(::testing::Message() << "V " << V << " T " << temperature << " top_k "
                                            << top_k << " top_p " << top_p);
          Tensor ids = Tensor::empty({B}, DType::I32), lp = Tensor::empty({B});
          Tensor ids_c = Tensor::empty({B}, DType::I32), lp_c = Tensor::empty({B});
          impl.sample_rows(x, temperature, top_k, top_p, u, ids, lp, 0);
          ops::sample_rows(x, temperature, top_k, top_p, u, ids_c, lp_c);
          EXPECT_EQ(ids.to_vector_i32(), ids_c.to_vector_i32());
          EXPECT_TRUE(all_close(lp, to_double(lp_c), 1e-5, 1e-5));
        }
  }
  check_sampling_limited(impl);
}

// ---- token_stats ---------------------------------------------------------------------------------

inline TokenStats all_stats(int64_t n) {
  TokenStats st;
  for (Tensor* x : {&st.logp_y, &st.entropy_p, &st.logq_y, &st.entropy_q, &st.kl_full,
                    &st.kl_topk, &st.overlap_ratio, &st.overlap_mass_p, &st.overlap_mass_q,
                    &st.overlap_adv})
    *x = Tensor::empty({n});
  return st;
}

inline std::vector<Tensor*> fields(TokenStats& st) {
  return {&st.logp_y,  &st.entropy_p,     &st.logq_y,         &st.entropy_q,
          &st.kl_full, &st.kl_topk,       &st.overlap_ratio,  &st.overlap_mass_p,
          &st.overlap_mass_q, &st.overlap_adv};
}

inline void expect_stats_equal(DistillImpl& impl, const Tensor& z, const TeacherRows& t,
                               const Tensor& y, int diag_k, const ShardRows* sh, int64_t n,
                               bool some_undefined = false) {
  TokenStats a = all_stats(n), b = all_stats(n);
  if (some_undefined) {
    a.entropy_q = b.entropy_q = Tensor();
    a.overlap_mass_q = b.overlap_mass_q = Tensor();
  }
  impl.token_stats(z, t, y, diag_k, a, sh);
  ops::token_stats(z, t, y, diag_k, b, sh);
  const auto fa = fields(a), fb = fields(b);
  for (std::size_t i = 0; i < fa.size(); ++i) {
    if (!fb[i]->defined()) continue;
    EXPECT_TRUE(close_or_nan(to_double(*fa[i]), to_double(*fb[i]))) << "output " << i;
  }
}

inline void check_token_stats(DistillImpl& impl) {
  uint64_t seed = 300;
  for (int variant = 0; variant < 3; ++variant) {
    const Problem P = make_problem(seed++, 6, 40, 4, variant == 1, variant == 2);
    for (Signal mode : {Signal::Sampled, Signal::TopK, Signal::Full})
      for (int diag_k : {3, 5, 64}) {
        SCOPED_TRACE(::testing::Message() << "variant " << variant << " mode "
                                          << static_cast<int>(mode) << " diag_k " << diag_k);
        TeacherRows t = teacher_rows(P, mode);
        if (mode == Signal::Sampled) t.entropy_q = random_tensor({P.n}, seed++, 0.0f, 3.0f);
        expect_stats_equal(impl, P.zt, t, P.y, diag_k, nullptr, P.n);
        expect_stats_equal(impl, P.zt, t, P.y, diag_k, nullptr, P.n, true);
      }
  }
  // Ties everywhere: the top-k sets follow the lower-id rule.
  Problem P = make_problem(seed++, 5, 30, 3);
  for (float* p : {P.zt.data<float>(), P.ut.data<float>()})
    for (int64_t i = 0; i < P.n * P.V; ++i) p[i] = std::round(p[i] * 2.0f) / 2.0f;
  expect_stats_equal(impl, P.zt, teacher_rows(P, Signal::Full), P.y, 4, nullptr, P.n);
}

// ---- objective_rows --------------------------------------------------------------------------

struct ObjCase {
  Signal mode;
  ObjectiveArgs args;
  Extra extra;
  bool full_teacher_ids = true;
};

inline std::vector<ObjCase> objective_cases() {
  std::vector<ObjCase> cases;
  auto add = [&](Signal mode, ObjectiveKind kind, Extra extra, auto tweak) {
    ObjCase c{mode, ObjectiveArgs{}, extra};
    c.args.kind = kind;
    tweak(c);
    cases.push_back(c);
  };
  auto none = [](ObjCase&) {};
  add(Signal::Sampled, ObjectiveKind::PgSampled, Extra::Ratio, none);
  add(Signal::Sampled, ObjectiveKind::PgSampled, Extra::Ratio, [](ObjCase& c) { c.args.clip = 0.2f; });
  add(Signal::Sampled, ObjectiveKind::PgSampled, Extra::NoRatio, none);
  add(Signal::Sampled, ObjectiveKind::Sft, Extra::None, none);
  add(Signal::Sampled, ObjectiveKind::Sft, Extra::Ratio, none);
  for (Signal mode : {Signal::TopK, Signal::Full}) {
    for (Support s : {Support::Student, Support::Teacher, Support::Intersection, Support::Union,
                      Support::SymDiff})
      for (SupportWeight wt :
           {SupportWeight::StudentP, SupportWeight::TeacherP, SupportWeight::Uniform})
        add(mode, ObjectiveKind::PgTopK, Extra::NoRatio, [&](ObjCase& c) {
          c.args.support = s;
          c.args.weight = wt;
          c.args.teacher_weight = 0.7f;
        });
    add(mode, ObjectiveKind::TopKRkl, Extra::Ratio, none);
  }
  add(Signal::Full, ObjectiveKind::PgTopK, Extra::None, [](ObjCase& c) {
    c.args.support = Support::Union;
    c.full_teacher_ids = false;  // the teacher's top-k from its logits
  });
  add(Signal::TopK, ObjectiveKind::Fkl, Extra::None, none);
  add(Signal::TopK, ObjectiveKind::Fkl, Extra::NoRatio, [](ObjCase& c) { c.args.tail = true; });
  add(Signal::Full, ObjectiveKind::Fkl, Extra::None, none);
  add(Signal::Full, ObjectiveKind::FullRkl, Extra::Ratio, [](ObjCase& c) { c.args.clip = 0.1f; });
  for (float beta : {0.0f, 0.3f, 0.5f, 1.0f})
    add(Signal::Full, ObjectiveKind::Jsd, Extra::None, [&](ObjCase& c) { c.args.beta = beta; });
  return cases;
}

inline void expect_objective_equal(DistillImpl& impl, const Problem& P, const ObjCase& c,
                                   const Tensor& z, const TeacherRows& t, const ShardRows* sh) {
  ObjectiveArgs a = c.args;
  a.use_ratio = c.extra == Extra::Ratio;
  const Tensor none;
  const Tensor& logmu = a.use_ratio ? P.logmu : none;
  const Tensor& adv = c.extra == Extra::None ? none : P.adv;
  Tensor la = Tensor::empty({P.n}), lb = Tensor::empty({P.n});
  Tensor da = Tensor::empty({P.n, z.dim(1)}), db = Tensor::empty({P.n, z.dim(1)});
  impl.objective_rows(z, t, P.y, logmu, adv, P.baseline, P.w, a, la, da, sh);
  ops::objective_rows(z, t, P.y, logmu, adv, P.baseline, P.w, a, lb, db, sh);
  EXPECT_TRUE(close_or_nan(to_double(la), to_double(lb))) << "loss";
  EXPECT_TRUE(close_or_nan(to_double(da), to_double(db))) << "dz";
}

inline std::string describe(const ObjCase& c) {
  return "mode " + std::to_string(static_cast<int>(c.mode)) + " kind " +
         std::to_string(static_cast<int>(c.args.kind)) + " support " +
         std::to_string(static_cast<int>(c.args.support)) + " weight " +
         std::to_string(static_cast<int>(c.args.weight)) + " tail " +
         std::to_string(c.args.tail) + " beta " + std::to_string(c.args.beta) + " extra " +
         std::to_string(static_cast<int>(c.extra));
}

inline void check_objectives(DistillImpl& impl) {
  uint64_t seed = 500;
  for (int variant = 0; variant < 3; ++variant) {
    const Problem P = make_problem(seed++, 5, 37, 4, variant == 1, variant == 2);
    for (const ObjCase& c : objective_cases()) {
      SCOPED_TRACE(describe(c) + " variant " + std::to_string(variant));
      expect_objective_equal(impl, P, c, P.zt, teacher_rows(P, c.mode, c.full_teacher_ids),
                             nullptr);
    }
  }
}

// ---- vocabulary shards ----------------------------------------------------------------------

// A problem's vocabulary in `shards` equal parts, with every shard's ShardRows built the way
// parallel/vocab_parallel does over MPI, here in one process with the CPU ops: ids [y | S | T],
// then in Full mode the merged top-k lists of p and q and the full sums.
struct Shards {
  int64_t width = 0;
  std::vector<Tensor> z, u;
  std::vector<ShardRows> rows;
  Tensor ids;
};

inline Shards make_shards(const Problem& P, int shards, bool full, int64_t top_k, double beta) {
  const int64_t n = P.n, k = P.k, K = 1 + 2 * k;
  std::vector<int32_t> ids(static_cast<std::size_t>(n * K));
  for (int64_t r = 0; r < n; ++r) {
    ids[r * K] = P.y.data<int32_t>()[r];
    for (int64_t i = 0; i < k; ++i) {
      ids[r * K + 1 + i] = P.sid.data<int32_t>()[r * k + i];
      ids[r * K + 1 + k + i] = P.tid.data<int32_t>()[r * k + i];
    }
  }
  Shards s;
  s.ids = Tensor::from_vector(ids, {n, K});
  s.width = P.V / shards;
  std::vector<ShardPartials> pz(shards), pu(shards);
  std::vector<std::vector<int32_t>> iz(shards), iu(shards);
  std::vector<std::vector<double>> wz(shards), wu(shards);
  for (int p = 0; p < shards; ++p) {
    const VocabRange range{p * s.width, P.V};
    s.z.push_back(column_slice(P.zt, p * s.width, (p + 1) * s.width));
    s.u.push_back(column_slice(P.ut, p * s.width, (p + 1) * s.width));
    ops::shard_partials(s.z[p], range, s.ids, &P.tid, pz[p]);
    if (!full) continue;
    ops::shard_partials(s.u[p], range, s.ids, nullptr, pu[p]);
    ops::shard_topk(s.z[p], range, top_k, iz[p], wz[p]);
    ops::shard_topk(s.u[p], range, top_k, iu[p], wu[p]);
  }
  for (int p = 0; p < shards; ++p)
    s.rows.push_back(ops::combine_shards(pz, VocabRange{p * s.width, P.V}, s.ids, k, k));
  if (!full) return s;
  const ShardRows rows_u = ops::combine_shards(pu, VocabRange{0, P.V}, s.ids, k, k);
  const std::vector<int32_t> top_p = ops::merge_topk(iz, wz, n, top_k);
  const std::vector<int32_t> top_q = ops::merge_topk(iu, wu, n, top_k);
  std::vector<int32_t> extra(static_cast<std::size_t>(n * 2 * top_k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < top_k; ++i) {
      extra[r * 2 * top_k + i] = top_p[r * top_k + i];
      extra[r * 2 * top_k + top_k + i] = top_q[r * top_k + i];
    }
  const Tensor extra_ids = Tensor::from_vector(extra, {n, 2 * top_k});
  ShardSums total;
  for (auto* v : {&total.kl_pq, &total.kl_qp, &total.jsd, &total.jsd_pg}) v->assign(n, 0.0);
  std::vector<double> zv(extra.size(), 0.0), uv(extra.size(), 0.0);
  for (int p = 0; p < shards; ++p) {
    const VocabRange range{p * s.width, P.V};
    ShardSums part;
    ops::shard_full_sums(s.z[p], s.u[p], s.rows[p].lse, rows_u.lse, beta, part);
    for (int64_t r = 0; r < n; ++r) {
      total.kl_pq[r] += part.kl_pq[r];
      total.kl_qp[r] += part.kl_qp[r];
      total.jsd[r] += part.jsd[r];
      total.jsd_pg[r] += part.jsd_pg[r];
    }
    const std::vector<double> a = ops::shard_values(s.z[p], range, extra_ids);
    const std::vector<double> b = ops::shard_values(s.u[p], range, extra_ids);
    for (std::size_t i = 0; i < a.size(); ++i) {
      zv[i] += a[i];
      uv[i] += b[i];
    }
  }
  const int64_t K2 = K + 2 * top_k;
  std::vector<int32_t> all_ids(static_cast<std::size_t>(n * K2));
  std::vector<double> z_at(all_ids.size()), u_at(all_ids.size());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < K; ++c) {
      all_ids[r * K2 + c] = ids[r * K + c];
      z_at[r * K2 + c] = s.rows[0].z_at[r * K + c];
      u_at[r * K2 + c] = rows_u.z_at[r * K + c];
    }
    for (int64_t c = 0; c < 2 * top_k; ++c) {
      all_ids[r * K2 + K + c] = extra[r * 2 * top_k + c];
      z_at[r * K2 + K + c] = zv[r * 2 * top_k + c];
      u_at[r * K2 + K + c] = uv[r * 2 * top_k + c];
    }
  }
  for (ShardRows& rows : s.rows) {
    rows.ids = Tensor::from_vector(all_ids, {n, K2});
    rows.z_at = z_at;
    rows.u_at = u_at;
    rows.full = true;
    rows.top_k = top_k;
    rows.lse_u = rows_u.lse;
    rows.entropy_u = rows_u.entropy;
    rows.beta = beta;
    rows.kl_pq = total.kl_pq;
    rows.kl_qp = total.kl_qp;
    rows.jsd = total.jsd;
    rows.jsd_pg = total.jsd_pg;
  }
  return s;
}

// The shard ops themselves, shard by shard.
inline void check_shard_ops(DistillImpl& impl) {
  const Problem P = make_problem(700, 6, 36, 3, false, true);
  for (int shards : {1, 2, 3}) {
    SCOPED_TRACE(::testing::Message() << shards << " shards");
    const Shards s = make_shards(P, shards, true, 4, 0.3);
    for (int p = 0; p < shards; ++p) {
      const VocabRange range{p * s.width, P.V};
      for (const Tensor* tail : {static_cast<const Tensor*>(&P.tid), static_cast<const Tensor*>(nullptr)}) {
        ShardPartials a, b;
        impl.shard_partials(s.z[p], range, s.ids, tail, a);
        ops::shard_partials(s.z[p], range, s.ids, tail, b);
        EXPECT_EQ(a.max, b.max);
        EXPECT_EQ(a.z_at, b.z_at);
        EXPECT_TRUE(all_close(a.sum_exp, b.sum_exp, 1e-12, 0));
        EXPECT_TRUE(all_close(a.sum_exp_dz, b.sum_exp_dz, 1e-12, 1e-14));
        EXPECT_TRUE(all_close(a.sum_exp_tail, b.sum_exp_tail, 1e-12, 0));
      }
      for (int64_t k : {int64_t(1), int64_t(4), s.width + 2}) {  // (the CPU op needs k >= 1)
        std::vector<int32_t> ia, ib;
        std::vector<double> va, vb;
        impl.shard_topk(s.z[p], range, k, ia, va);
        ops::shard_topk(s.z[p], range, k, ib, vb);
        EXPECT_EQ(ia, ib) << "k " << k;
        EXPECT_EQ(va, vb) << "k " << k;
      }
      for (double beta : {0.0, 0.3, 1.0}) {
        ShardSums a, b;
        impl.shard_full_sums(s.z[p], s.u[p], s.rows[p].lse, s.rows[p].lse_u, beta, a);
        ops::shard_full_sums(s.z[p], s.u[p], s.rows[p].lse, s.rows[p].lse_u, beta, b);
        EXPECT_TRUE(all_close(a.kl_pq, b.kl_pq, 1e-10, 1e-13));
        EXPECT_TRUE(all_close(a.kl_qp, b.kl_qp, 1e-10, 1e-13));
        EXPECT_TRUE(all_close(a.jsd, b.jsd, 1e-10, 1e-13));
        EXPECT_TRUE(all_close(a.jsd_pg, b.jsd_pg, 1e-10, 1e-13));
      }
      EXPECT_EQ(impl.shard_values(s.z[p], range, s.rows[p].ids),
                ops::shard_values(s.z[p], range, s.rows[p].ids));
    }
  }
}

// token_stats and objective_rows on each shard's columns with its ShardRows.
inline void check_sharded_rows(DistillImpl& impl) {
  const Problem P = make_problem(800, 5, 24, 3);
  const int diag_k = 4;
  for (int shards : {2, 3})
    for (bool full : {false, true}) {
      SCOPED_TRACE(::testing::Message() << shards << " shards, full " << full);
      const Shards s = make_shards(P, shards, full, diag_k, double(0.3f));
      for (int p = 0; p < shards; ++p) {
        for (Signal mode : {Signal::Sampled, Signal::TopK, Signal::Full}) {
          if ((mode == Signal::Full) != full) continue;
          TeacherRows t = teacher_rows(P, mode);
          if (full) t.logits = s.u[p];
          expect_stats_equal(impl, s.z[p], t, P.y, diag_k, &s.rows[p], P.n);
        }
        for (ObjCase c : objective_cases()) {
          if ((c.mode == Signal::Full) != full || !c.full_teacher_ids) continue;
          if (c.args.kind == ObjectiveKind::Jsd && c.args.beta > 0.0f && c.args.beta < 1.0f)
            c.args.beta = 0.3f;  // the beta the shard rows were summed at
          SCOPED_TRACE(describe(c) + " shard " + std::to_string(p));
          TeacherRows t = teacher_rows(P, c.mode);
          if (full) t.logits = s.u[p];
          expect_objective_equal(impl, P, c, s.z[p], t, &s.rows[p]);
        }
      }
    }
}

}  // namespace opd::testing::distill_suite
