// Vocabulary-parallel distillation rows over MPI (mpirun -np 2 and 3): each rank holds its
// columns of a random problem's student and teacher logits, vocab_parallel_rows exchanges the
// row quantities, and token_stats / objective_rows on the columns alone equal the whole-row ops
// (statistics and losses on every rank; dz column by column) in the top-k and full signal modes.
#include <gtest/gtest.h>

#include "backend/objective_reference.hpp"
#include "comm/communicator.hpp"
#include "parallel/vocab_parallel.hpp"
#include "testing/mpi_worker.hpp"

using namespace opd::testing::objective_ref;
using opd::backend::ShardRows;
using opd::backend::VocabRange;

namespace {


// NaN where the whole-row op gives NaN, else within fp tolerance.
void expect_close(std::vector<double> a, std::vector<double> b, const char* what) {
  for (std::size_t j = 0; j < a.size(); ++j)
    if (std::isnan(b[j])) {
      EXPECT_TRUE(std::isnan(a[j])) << what << " row " << j;
      a[j] = b[j] = 0;
    }
  EXPECT_TRUE(all_close(a, b, 1e-5, 1e-6)) << what;
}

void check_rows(Signal mode) {
  SCOPED_TRACE(::testing::Message() << "mode " << static_cast<int>(mode));
  const auto world = opd::comm::Communicator::world();
  const opd::parallel::TensorParallel tp(world);
  const Problem P = make_problem(940, 4, 12, 3);
  const int64_t width = P.V / tp.size(), begin = width * tp.rank(), k = P.k, diag_k = 4;
  const VocabRange range{begin, P.V};
  const Tensor z = opd::testing::column_slice(P.zt, begin, begin + width), u = opd::testing::column_slice(P.ut, begin, begin + width);
  std::vector<int32_t> ids;
  for (int64_t r = 0; r < P.n; ++r) {
    ids.push_back(P.y.data<int32_t>()[r]);
    for (int64_t i = 0; i < k; ++i) ids.push_back(P.sid.data<int32_t>()[r * k + i]);
    for (int64_t i = 0; i < k; ++i) ids.push_back(P.tid.data<int32_t>()[r * k + i]);
  }
  const Tensor id_t = Tensor::from_vector(ids, {P.n, 1 + 2 * k});
  const bool full = mode == Signal::Full;
  const float beta = 0.3f;
  const ShardRows rows = opd::parallel::vocab_parallel_rows(
      z, range, id_t, &P.tid, k, k, tp, full ? &u : nullptr, full ? diag_k : 0, beta);
  TeacherRows whole_t = teacher_rows(P, mode), shard_t = whole_t;
  if (full) shard_t.logits = u;

  // Token statistics.
  auto stats = [&](const Tensor& zz, const TeacherRows& t, const ShardRows* sh) {
    ops::TokenStats st;
    for (Tensor* x : {&st.logp_y, &st.entropy_p, &st.logq_y, &st.entropy_q, &st.kl_full,
                      &st.kl_topk, &st.overlap_ratio, &st.overlap_mass_p, &st.overlap_mass_q,
                      &st.overlap_adv})
      *x = Tensor::empty({P.n});
    ops::token_stats(zz, t, P.y, static_cast<int>(diag_k), st, sh);
    return std::vector<Tensor>{st.logp_y, st.entropy_p, st.logq_y, st.entropy_q, st.kl_full,
                               st.kl_topk, st.overlap_ratio, st.overlap_mass_p,
                               st.overlap_mass_q, st.overlap_adv};
  };
  const auto a = stats(P.zt, whole_t, nullptr), b = stats(z, shard_t, &rows);
  for (std::size_t i = 0; i < a.size(); ++i)
    if (full || (i != 3 && i != 4)) expect_close(to_double(b[i]), to_double(a[i]), "token stat");

  // Objectives.
  std::vector<ObjectiveArgs> kinds;
  ObjectiveArgs o;
  o.kind = ObjectiveKind::PgTopK;
  o.support = Support::Union;
  kinds.push_back(o);
  o = ObjectiveArgs{};
  o.kind = ObjectiveKind::TopKRkl;
  kinds.push_back(o);
  o = ObjectiveArgs{};
  o.kind = ObjectiveKind::Fkl;
  kinds.push_back(o);
  if (full) {
    o = ObjectiveArgs{};
    o.kind = ObjectiveKind::FullRkl;
    kinds.push_back(o);
    o = ObjectiveArgs{};
    o.kind = ObjectiveKind::Jsd;
    o.beta = beta;
    kinds.push_back(o);
  } else {
    o.tail = true;
    kinds.push_back(o);
  }
  for (ObjectiveArgs args : kinds) {
    SCOPED_TRACE(::testing::Message() << "kind " << static_cast<int>(args.kind));
    const Result whole = run(P, whole_t, args, Extra::Ratio);
    args.use_ratio = true;
    Tensor loss = Tensor::empty({P.n}), dz = Tensor::empty({P.n, width});
    ops::objective_rows(z, shard_t, P.y, P.logmu, P.adv, P.baseline, P.w, args, loss, dz, &rows);
    expect_close(to_double(loss), whole.loss, "loss");
    std::vector<double> mine;
    for (int64_t r = 0; r < P.n; ++r)
      for (int64_t j = 0; j < width; ++j) mine.push_back(whole.dz[r * P.V + begin + j]);
    expect_close(to_double(dz), mine, "dz");
  }
}

}  // namespace

TEST(VocabParallelRowsWorker, TopKAndFull) {
  OPD_MPI_WORKER_ONLY();
  check_rows(Signal::TopK);
  check_rows(Signal::Full);
}

TEST(VocabParallelRows, TwoRanks) { EXPECT_MPI_WORKERS_PASS(2, "VocabParallelRowsWorker.TopKAndFull"); }
TEST(VocabParallelRows, ThreeRanks) { EXPECT_MPI_WORKERS_PASS(3, "VocabParallelRowsWorker.TopKAndFull"); }
