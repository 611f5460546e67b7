// Vocabulary-sharded token_stats and objective_rows (tensor parallelism without gathering
// logits): the vocabulary of a random problem is split into 2 and 3 shards; every shard's
// partials are combined into ShardRows, each shard runs the op on its columns alone, and the
// results equal the unsharded op's (the statistics and losses on every shard, dz as the shards'
// columns side by side) for the sampled and top-k signal modes and every kind they allow.
#include <gtest/gtest.h>

#include "objective_reference.hpp"

using namespace opd::testing::objective_ref;
using opd::backend::ShardPartials;
using opd::backend::ShardRows;
using opd::backend::VocabRange;

namespace {


// The problem's ids (y, then S, then T) and the shard rows of each of `shards` equal shards.
struct Sharded {
  int64_t width = 0;
  std::vector<Tensor> z;  // each shard's columns
  std::vector<ShardRows> rows;
};

Sharded shard_problem(const Problem& P, int shards) {
  const int64_t n = P.n, k = P.k, K = 1 + 2 * k;
  std::vector<int32_t> ids(static_cast<std::size_t>(n * K));
  for (int64_t r = 0; r < n; ++r) {
    ids[r * K] = P.y.data<int32_t>()[r];
    for (int64_t i = 0; i < k; ++i) {
      ids[r * K + 1 + i] = P.sid.data<int32_t>()[r * k + i];
      ids[r * K + 1 + k + i] = P.tid.data<int32_t>()[r * k + i];
    }
  }
  const Tensor id_t = Tensor::from_vector(ids, {n, K});
  Sharded s;
  s.width = P.V / shards;
  std::vector<ShardPartials> parts(static_cast<std::size_t>(shards));
  for (int p = 0; p < shards; ++p) {
    s.z.push_back(opd::testing::column_slice(P.zt, p * s.width, (p + 1) * s.width));
    ops::shard_partials(s.z.back(), VocabRange{p * s.width, P.V}, id_t, &P.tid, parts[p]);
  }
  for (int p = 0; p < shards; ++p)
    s.rows.push_back(ops::combine_shards(parts, VocabRange{p * s.width, P.V}, id_t, k, k));
  return s;
}

void expect_stats_match(const Problem& P, Signal mode, int shards) {
  SCOPED_TRACE(::testing::Message() << "shards " << shards << " mode " << static_cast<int>(mode));
  const TeacherRows t = teacher_rows(P, mode);
  auto stats = [&](const Tensor& z, const ShardRows* sh) {
    ops::TokenStats st;
    for (Tensor* x : {&st.logp_y, &st.entropy_p, &st.logq_y, &st.entropy_q, &st.kl_full,
                      &st.kl_topk, &st.overlap_ratio, &st.overlap_mass_p, &st.overlap_mass_q,
                      &st.overlap_adv})
      *x = Tensor::empty({P.n});
    ops::token_stats(z, t, P.y, 4, st, sh);
    return std::vector<std::vector<double>>{
        to_double(st.logp_y),        to_double(st.entropy_p),      to_double(st.logq_y),
        to_double(st.kl_topk),       to_double(st.overlap_ratio),  to_double(st.overlap_mass_p),
        to_double(st.overlap_mass_q), to_double(st.overlap_adv)};
  };
  const auto whole = stats(P.zt, nullptr);
  const Sharded s = shard_problem(P, shards);
  for (int p = 0; p < shards; ++p) {
    const auto part = stats(s.z[p], &s.rows[p]);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      if (mode == Signal::Sampled && i >= 3) break;  // NaN by definition in sampled mode
      // NaN where the whole-vocabulary op gives NaN (log q(y) outside both top-k lists).
      std::vector<double> a = part[i], b = whole[i];
      for (std::size_t j = 0; j < a.size(); ++j)
        if (std::isnan(b[j])) {
          EXPECT_TRUE(std::isnan(a[j])) << "output " << i << " row " << j;
          a[j] = b[j] = 0;
        }
      EXPECT_TRUE(all_close(a, b, 1e-5, 1e-6)) << "output " << i << " shard " << p;
    }
  }
}

void expect_objective_matches(const Problem& P, Signal mode, ObjectiveArgs a, Extra extra,
                              int shards) {
  SCOPED_TRACE(::testing::Message() << "shards " << shards << " kind " << static_cast<int>(a.kind)
                                    << " support " << static_cast<int>(a.support) << " weight "
                                    << static_cast<int>(a.weight) << " tail " << a.tail);
  const TeacherRows t = teacher_rows(P, mode);
  const Result whole = run(P, t, a, extra);
  const Sharded s = shard_problem(P, shards);
  a.use_ratio = extra == Extra::Ratio;
  Tensor none;
  std::vector<double> dz(static_cast<std::size_t>(P.n * P.V));
  for (int p = 0; p < shards; ++p) {
    Tensor loss = Tensor::empty({P.n}), dzp = Tensor::empty({P.n, s.width});
    ops::objective_rows(s.z[p], t, P.y, a.use_ratio ? P.logmu : none,
                        extra == Extra::None ? none : P.adv, P.baseline, P.w, a, loss, dzp,
                        &s.rows[p]);
    EXPECT_TRUE(all_close(loss, whole.loss, 1e-5, 1e-6)) << "loss on shard " << p;
    for (int64_t r = 0; r < P.n; ++r)
      for (int64_t j = 0; j < s.width; ++j)
        dz[r * P.V + p * s.width + j] = dzp.data<float>()[r * s.width + j];
  }
  EXPECT_TRUE(all_close(dz, whole.dz, 1e-5, 1e-6));
}

}  // namespace

TEST(VocabShards, TokenStatsMatchTheWholeVocabulary) {
  const Problem P = make_problem(910, 5, 12, 3);
  for (int shards : {1, 2, 3})
    for (Signal mode : {Signal::Sampled, Signal::TopK}) expect_stats_match(P, mode, shards);
}

TEST(VocabShards, ObjectivesMatchTheWholeVocabulary) {
  const Problem P = make_problem(920, 5, 12, 3);
  for (int shards : {2, 3}) {
    ObjectiveArgs a;
    a.kind = ObjectiveKind::PgSampled;
    a.clip = 0.2f;
    expect_objective_matches(P, Signal::Sampled, a, Extra::Ratio, shards);
    a = ObjectiveArgs{};
    a.kind = ObjectiveKind::Sft;
    expect_objective_matches(P, Signal::Sampled, a, Extra::None, shards);
    for (Support sup : {Support::Student, Support::Teacher, Support::Intersection, Support::Union,
                        Support::SymDiff})
      for (SupportWeight wt : {SupportWeight::StudentP, SupportWeight::TeacherP, SupportWeight::Uniform}) {
        a = ObjectiveArgs{};
        a.kind = ObjectiveKind::PgTopK;
        a.support = sup;
        a.weight = wt;
        expect_objective_matches(P, Signal::TopK, a, Extra::NoRatio, shards);
      }
    a = ObjectiveArgs{};
    a.kind = ObjectiveKind::TopKRkl;
    expect_objective_matches(P, Signal::TopK, a, Extra::Ratio, shards);
    for (bool tail : {false, true}) {
      a = ObjectiveArgs{};
      a.kind = ObjectiveKind::Fkl;
      a.tail = tail;
      expect_objective_matches(P, Signal::TopK, a, Extra::None, shards);
    }
  }
}

TEST(VocabShards, FullModeAndMissingIdsAreRefused) {
  const Problem P = make_problem(930, 3, 8, 2);
  const Sharded s = shard_problem(P, 2);
  ObjectiveArgs a;
  a.kind = ObjectiveKind::FullRkl;
  Tensor loss = Tensor::empty({P.n}), dz = Tensor::empty({P.n, s.width}), none;
  EXPECT_THROW(ops::objective_rows(s.z[0], teacher_rows(P, Signal::Full), P.y, none, none, none,
                                   P.w, a, loss, dz, &s.rows[0]),
               opd::Error);
  // Rows whose ids lack the teacher's list cannot serve fkl on the teacher's top-k.
  ShardRows thin = s.rows[0];
  thin.ids = Tensor::from_vector(std::vector<int32_t>(static_cast<std::size_t>(P.n), 0), {P.n, 1});
  thin.z_at.assign(static_cast<std::size_t>(P.n), 0.0);
  a.kind = ObjectiveKind::Fkl;
  EXPECT_THROW(ops::objective_rows(s.z[0], teacher_rows(P, Signal::TopK), P.y, none, none, none,
                                   P.w, a, loss, dz, &thin),
               opd::Error);
}
