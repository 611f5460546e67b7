// token_stats (per-token student/teacher quantities and the §5 overlap diagnostics): hand-computed
// small distributions, a float64 reference on random rows (Full), agreement of TopK mode with Full
// mode on the same teacher, the teacher = student identities, and the NaNs of Sampled mode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace {

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::testing;
namespace ops = opd::backend;
using ops::Signal;
using ops::TeacherRows;
using ops::TokenStats;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Every output allocated, filled with a sentinel so that an unwritten element shows.
TokenStats all_outputs(int64_t n) {
  auto mk = [n] {
    Tensor t = Tensor::empty({n});
    std::fill(t.data<float>(), t.data<float>() + n, -12345.0f);
    return t;
  };
  return {mk(), mk(), mk(), mk(), mk(), mk(), mk(), mk(), mk(), mk()};
}

// The outputs in the order of TokenStats, as doubles, so that tests can compare them wholesale.
struct Stats {
  std::vector<double> logp_y, entropy_p, logq_y, entropy_q, kl_full, kl_topk, ratio, mass_p, mass_q,
      adv;
};

Stats to_stats(const TokenStats& s) {
  return {to_double(s.logp_y),        to_double(s.entropy_p),      to_double(s.logq_y),
          to_double(s.entropy_q),     to_double(s.kl_full),        to_double(s.kl_topk),
          to_double(s.overlap_ratio), to_double(s.overlap_mass_p), to_double(s.overlap_mass_q),
          to_double(s.overlap_adv)};
}

Stats run(const Tensor& z, const TeacherRows& t, const std::vector<int32_t>& y, int diag_k) {
  const int64_t n = z.dim(0);
  TokenStats out = all_outputs(n);
  ops::token_stats(z, t, Tensor::from_vector(y, {n}), diag_k, out);
  return to_stats(out);
}

// Logits of a distribution: z = log p (softmax(log p) = p).
std::vector<float> log_of(const std::vector<double>& p) {
  std::vector<float> z;
  for (double v : p) z.push_back(static_cast<float>(std::log(v)));
  return z;
}

void expect_near(double actual, double expected, double tol, const char* what) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual)) << what << " = " << actual << ", expected NaN";
  } else {
    EXPECT_NEAR(actual, expected, tol) << what;
  }
}

void expect_all_nan(const std::vector<double>& v, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i)
    EXPECT_TRUE(std::isnan(v[i])) << what << "[" << i << "] = " << v[i] << ", expected NaN";
}

// ---- the hand case -----------------------------------------------------------------------------
// V = 5, p = (0.4, 0.3, 0.15, 0.1, 0.05), q = (0.1, 0.45, 0.25, 0.15, 0.05), k = 3.
//   S^p = {0, 1, 2}, S^q = {1, 2, 3}, I = {1, 2}: overlap ratio 2/3.
//   overlap mass p(I) = 0.3 + 0.15 = 0.45, q(I) = 0.45 + 0.25 = 0.7.
//   p_hat = (2/3, 1/3), q_hat = (0.45/0.7, 0.25/0.7) = (9/14, 5/14); overlap advantage
//   = 1/2 [2/3 log((9/14)/(2/3)) + 1/3 log((5/14)/(1/3))] = 1/2 [2/3 log(27/28) + 1/3 log(15/14)]
//   = -0.000623736142466.
//   kl_topk on S^p: p_bar = (8, 6, 3)/17, q_bar = (0.1, 0.45, 0.25)/0.8, so
//   KL = sum p_bar log(p/q) + log(0.8/0.85) = 8/17 log 4 + 6/17 log(2/3) + 3/17 log 0.6 +
//   log(16/17) = 0.358498164596046. kl_full = 0.4 log 4 + 0.3 log(2/3) + 0.15 log 0.6 + 0.1
//   log(2/3) + 0.05 log 1 = 0.315707857639792. H(p) = 1.392321254757429, H(q) = 1.370515174287956.
const std::vector<double> kP = {0.4, 0.3, 0.15, 0.1, 0.05};
const std::vector<double> kQ = {0.1, 0.45, 0.25, 0.15, 0.05};
constexpr double kRatio = 2.0 / 3.0, kMassP = 0.45, kMassQ = 0.7;
constexpr double kAdv = -0.000623736142466, kKlTopk = 0.358498164596046;
constexpr double kKlFull = 0.315707857639792, kHp = 1.392321254757429, kHq = 1.370515174287956;
constexpr double kTol = 2e-6;  // f32 outputs of O(1) values

TEST(TokenStats, HandCaseFull) {
  // Two copies of the row with y = 2 and y = 4.
  std::vector<float> zv = log_of(kP), xv = log_of(kQ);
  zv.insert(zv.end(), zv.begin(), zv.end());
  xv.insert(xv.end(), xv.begin(), xv.end());
  TeacherRows t;
  t.mode = Signal::Full;
  t.logits = Tensor::from_vector(xv, {2, 5});
  Stats s = run(Tensor::from_vector(zv, {2, 5}), t, {2, 4}, 3);
  expect_near(s.logp_y[0], std::log(0.15), kTol, "logp_y[0]");
  expect_near(s.logp_y[1], std::log(0.05), kTol, "logp_y[1]");
  expect_near(s.logq_y[0], std::log(0.25), kTol, "logq_y[0]");
  expect_near(s.logq_y[1], std::log(0.05), kTol, "logq_y[1]");
  for (int r = 0; r < 2; ++r) {
    expect_near(s.entropy_p[r], kHp, kTol, "entropy_p");
    expect_near(s.entropy_q[r], kHq, kTol, "entropy_q");
    expect_near(s.kl_full[r], kKlFull, kTol, "kl_full");
    expect_near(s.kl_topk[r], kKlTopk, kTol, "kl_topk");
    expect_near(s.ratio[r], kRatio, 1e-7, "overlap_ratio");
    expect_near(s.mass_p[r], kMassP, kTol, "overlap_mass_p");
    expect_near(s.mass_q[r], kMassQ, kTol, "overlap_mass_q");
    expect_near(s.adv[r], kAdv, 1e-7, "overlap_adv");
  }
}

TEST(TokenStats, HandCaseTopK) {
  // The same distributions sent as ids: S^p = {0, 1, 2} with log q there, S^q = {1, 2, 3} (in
  // descending q) with log q there. y = 2 (in S^p), 3 (only in S^q), 4 (in neither).
  std::vector<float> zv;
  std::vector<int32_t> sid, tid;
  std::vector<float> lqs, lqt;
  for (int r = 0; r < 3; ++r) {
    std::vector<float> z = log_of(kP);
    zv.insert(zv.end(), z.begin(), z.end());
    for (int id : {0, 1, 2}) {
      sid.push_back(id);
      lqs.push_back(static_cast<float>(std::log(kQ[id])));
    }
    for (int id : {1, 2, 3}) {
      tid.push_back(id);
      lqt.push_back(static_cast<float>(std::log(kQ[id])));
    }
  }
  TeacherRows t;
  t.mode = Signal::TopK;
  t.student_ids = Tensor::from_vector(sid, {3, 3});
  t.logq_student_ids = Tensor::from_vector(lqs, {3, 3});
  t.teacher_ids = Tensor::from_vector(tid, {3, 3});
  t.logq_teacher_ids = Tensor::from_vector(lqt, {3, 3});
  Stats s = run(Tensor::from_vector(zv, {3, 5}), t, {2, 3, 4}, /*diag_k ignored*/ 99);
  expect_near(s.logq_y[0], std::log(0.25), kTol, "logq_y (y in S^p)");
  expect_near(s.logq_y[1], std::log(0.15), kTol, "logq_y (y only in S^q)");
  expect_near(s.logq_y[2], kNaN, 0, "logq_y (y in neither set)");
  expect_near(s.logp_y[1], std::log(0.1), kTol, "logp_y");
  for (int r = 0; r < 3; ++r) {
    expect_near(s.entropy_p[r], kHp, kTol, "entropy_p");
    expect_near(s.entropy_q[r], kNaN, 0, "entropy_q");
    expect_near(s.kl_full[r], kNaN, 0, "kl_full");
    expect_near(s.kl_topk[r], kKlTopk, kTol, "kl_topk");
    expect_near(s.ratio[r], kRatio, 1e-7, "overlap_ratio");
    expect_near(s.mass_p[r], kMassP, kTol, "overlap_mass_p");
    expect_near(s.mass_q[r], kMassQ, kTol, "overlap_mass_q");
    expect_near(s.adv[r], kAdv, 1e-7, "overlap_adv");
  }
}

TEST(TokenStats, HandCaseTiesAndEmptyOverlap) {
  // V = 4, p uniform, q = (0.1, 0.2, 0.3, 0.4), diag_k = 2. Ties in p go to the lower ids:
  // S^p = {0, 1}; S^q = {3, 2}; I = {} -> ratio 0, masses 0, advantage 0 (defined as 0).
  // kl_topk on {0, 1}: p_bar = (1/2, 1/2), q_bar = (1/3, 2/3):
  //   KL = 1/2 log(3/2) + 1/2 log(3/4) = 1/2 log(9/8) = 0.058891517828192.
  // kl_full = sum 1/4 log(0.25 / q_v) = log 0.25 - 1/4 log(0.1 * 0.2 * 0.3 * 0.4) = 0.3174650...
  const std::vector<double> q = {0.1, 0.2, 0.3, 0.4};
  TeacherRows t;
  t.mode = Signal::Full;
  t.logits = Tensor::from_vector(log_of(q), {1, 4});
  Stats s = run(Tensor::from_vector(std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f}, {1, 4}), t, {0}, 2);
  const double kl_full = std::log(0.25) - 0.25 * std::log(0.1 * 0.2 * 0.3 * 0.4);
  expect_near(s.entropy_p[0], std::log(4.0), kTol, "entropy_p");
  expect_near(s.kl_full[0], kl_full, kTol, "kl_full");
  expect_near(s.kl_topk[0], 0.058891517828192, kTol, "kl_topk");
  EXPECT_EQ(s.ratio[0], 0.0);
  EXPECT_EQ(s.mass_p[0], 0.0);
  EXPECT_EQ(s.mass_q[0], 0.0);
  EXPECT_EQ(s.adv[0], 0.0);
  EXPECT_FALSE(std::signbit(s.adv[0]));

  // diag_k larger than V: both sets are the whole vocabulary; I = V, ratio 1, masses 1, and the
  // advantage is -KL(p || q) / V.
  s = run(Tensor::from_vector(std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f}, {1, 4}), t, {0}, 16);
  expect_near(s.ratio[0], 1.0, 0, "overlap_ratio");
  expect_near(s.mass_p[0], 1.0, kTol, "overlap_mass_p");
  expect_near(s.mass_q[0], 1.0, kTol, "overlap_mass_q");
  expect_near(s.kl_topk[0], kl_full, kTol, "kl_topk");
  expect_near(s.adv[0], -kl_full / 4.0, kTol, "overlap_adv");
}

// ---- float64 reference (Full mode) -------------------------------------------------------------

// The k ids of row x that come first in descending value, ties to the lower id.
std::vector<int> top_ids(const double* x, int64_t V, int k) {
  std::vector<int> ids(static_cast<std::size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return x[a] > x[b]; });
  ids.resize(static_cast<std::size_t>(k));
  return ids;
}

Stats reference_full(const std::vector<double>& z, const std::vector<double>& x,
                     const std::vector<int32_t>& y, int64_t n, int64_t V, int k) {
  Stats s;
  for (int64_t r = 0; r < n; ++r) {
    const double* zr = z.data() + r * V;
    const double* xr = x.data() + r * V;
    std::vector<double> lp(V), lq(V);
    auto log_softmax = [V](const double* a, std::vector<double>& out) {
      double m = *std::max_element(a, a + V), sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(a[j] - m);
      for (int64_t j = 0; j < V; ++j) out[j] = a[j] - m - std::log(sum);
    };
    log_softmax(zr, lp);
    log_softmax(xr, lq);
    double hp = 0, hq = 0, kl = 0;
    for (int64_t j = 0; j < V; ++j) {
      hp -= std::exp(lp[j]) * lp[j];
      hq -= std::exp(lq[j]) * lq[j];
      kl += std::exp(lp[j]) * (lp[j] - lq[j]);
    }
    s.logp_y.push_back(lp[y[r]]);
    s.logq_y.push_back(lq[y[r]]);
    s.entropy_p.push_back(hp);
    s.entropy_q.push_back(hq);
    s.kl_full.push_back(kl);
    // Renormalised KL and masses on a set, straight from the definitions.
    auto on_set = [&](const std::vector<int>& set, double& mp, double& mq) {
      mp = mq = 0;
      for (int v : set) {
        mp += std::exp(lp[v]);
        mq += std::exp(lq[v]);
      }
      double d = 0;
      for (int v : set) {
        double pb = std::exp(lp[v]) / mp, qb = std::exp(lq[v]) / mq;
        d += pb * std::log(pb / qb);
      }
      return d;
    };
    std::vector<int> sp = top_ids(zr, V, k), sq = top_ids(xr, V, k), inter;
    for (int v : sp)
      if (std::find(sq.begin(), sq.end(), v) != sq.end()) inter.push_back(v);
    double mp, mq;
    s.kl_topk.push_back(on_set(sp, mp, mq));
    double kli = on_set(inter, mp, mq);
    s.ratio.push_back(static_cast<double>(inter.size()) / k);
    s.mass_p.push_back(mp);
    s.mass_q.push_back(mq);
    s.adv.push_back(inter.empty() ? 0.0 : -kli / static_cast<double>(inter.size()));
  }
  return s;
}

void expect_stats_close(const Stats& a, const Stats& b, double rtol, double atol) {
  EXPECT_TRUE(all_close(a.logp_y, b.logp_y, rtol, atol)) << "logp_y";
  EXPECT_TRUE(all_close(a.entropy_p, b.entropy_p, rtol, atol)) << "entropy_p";
  EXPECT_TRUE(all_close(a.logq_y, b.logq_y, rtol, atol)) << "logq_y";
  EXPECT_TRUE(all_close(a.entropy_q, b.entropy_q, rtol, atol)) << "entropy_q";
  EXPECT_TRUE(all_close(a.kl_full, b.kl_full, rtol, atol)) << "kl_full";
  EXPECT_TRUE(all_close(a.kl_topk, b.kl_topk, rtol, atol)) << "kl_topk";
  EXPECT_TRUE(all_close(a.ratio, b.ratio, 0, 1e-7)) << "overlap_ratio";
  EXPECT_TRUE(all_close(a.mass_p, b.mass_p, rtol, atol)) << "overlap_mass_p";
  EXPECT_TRUE(all_close(a.mass_q, b.mass_q, rtol, atol)) << "overlap_mass_q";
  EXPECT_TRUE(all_close(a.adv, b.adv, rtol, atol)) << "overlap_adv";
}

TEST(TokenStats, FullModeMatchesFloat64Reference) {
  const int64_t n = 23, V = 61;
  const int k = 8;
  // Teacher = student plus noise, so that the top sets overlap partly (as in practice).
  Tensor z = random_tensor({n, V}, 101, -4.0f, 4.0f);
  Tensor x = random_tensor({n, V}, 202, -1.5f, 1.5f);
  for (int64_t i = 0; i < n * V; ++i) x.data<float>()[i] += z.data<float>()[i];
  std::vector<int32_t> y = random_ids({n}, static_cast<int32_t>(V), 7).to_vector_i32();
  TeacherRows t;
  t.mode = Signal::Full;
  t.logits = x;
  Stats got = run(z, t, y, k);
  Stats ref = reference_full(to_double(z), to_double(x), y, n, V, k);
  expect_stats_close(got, ref, 1e-5, 1e-6);
  // The noise must leave partial overlaps, or the test would not exercise intersections.
  double lo = *std::min_element(ref.ratio.begin(), ref.ratio.end());
  EXPECT_LT(lo, 1.0);
  EXPECT_GT(*std::max_element(ref.ratio.begin(), ref.ratio.end()), 0.0);
}

TEST(TokenStats, FullModeStableForLargeLogits) {
  // Logits around 1000 (and the teacher's around -1000): exp overflows without the max shift.
  const int64_t n = 5, V = 40;
  const int k = 6;
  Tensor z = random_tensor({n, V}, 3, -3.0f, 3.0f), x = random_tensor({n, V}, 4, -3.0f, 3.0f);
  for (int64_t i = 0; i < n * V; ++i) {
    z.data<float>()[i] += 1000.0f;
    x.data<float>()[i] -= 1000.0f;
  }
  std::vector<int32_t> y = random_ids({n}, static_cast<int32_t>(V), 9).to_vector_i32();
  TeacherRows t;
  t.mode = Signal::Full;
  t.logits = x;
  Stats got = run(z, t, y, k);
  // Shifted logits are exact in float64, so the reference sees the same distributions.
  Stats ref = reference_full(to_double(z), to_double(x), y, n, V, k);
  expect_stats_close(got, ref, 1e-4, 1e-5);
}

// ---- TopK mode against Full mode ---------------------------------------------------------------

// The TopK signal a teacher would send for these logits: the student's top-k ids (from z) with
// log q there, and the teacher's own top-k ids with log q there.
TeacherRows topk_signal(const Tensor& z, const Tensor& x, int k) {
  const int64_t n = z.dim(0), V = z.dim(1);
  Tensor lq = Tensor::empty({n, V});
  ops::log_softmax_rows(x, lq);
  Tensor zv = Tensor::empty({n, k}), sid = Tensor::empty({n, k}, DType::I32);
  Tensor xv = Tensor::empty({n, k}), tid = Tensor::empty({n, k}, DType::I32);
  ops::topk_rows(z, k, zv, sid);
  ops::topk_rows(x, k, xv, tid);
  TeacherRows t;
  t.mode = Signal::TopK;
  t.student_ids = sid;
  t.teacher_ids = tid;
  t.logq_student_ids = Tensor::empty({n, k});
  t.logq_teacher_ids = Tensor::empty({n, k});
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < k; ++j) {
      t.logq_student_ids.data<float>()[r * k + j] =
          lq.data<float>()[r * V + sid.data<int32_t>()[r * k + j]];
      t.logq_teacher_ids.data<float>()[r * k + j] =
          lq.data<float>()[r * V + tid.data<int32_t>()[r * k + j]];
    }
  return t;
}

TEST(TokenStats, TopKModeAgreesWithFullMode) {
  const int64_t n = 31, V = 97;
  const int k = 16;
  Tensor z = random_tensor({n, V}, 41, -5.0f, 5.0f);
  Tensor x = random_tensor({n, V}, 42, -2.0f, 2.0f);
  for (int64_t i = 0; i < n * V; ++i) x.data<float>()[i] += z.data<float>()[i];
  std::vector<int32_t> y = random_ids({n}, static_cast<int32_t>(V), 43).to_vector_i32();
  TeacherRows full;
  full.mode = Signal::Full;
  full.logits = x;
  Stats a = run(z, full, y, k);
  Stats b = run(z, topk_signal(z, x, k), y, /*diag_k ignored*/ 3);
  EXPECT_TRUE(all_close(b.logp_y, a.logp_y, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(b.entropy_p, a.entropy_p, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(b.kl_topk, a.kl_topk, 1e-5, 1e-6));
  EXPECT_EQ(b.ratio, a.ratio);
  EXPECT_TRUE(all_close(b.mass_p, a.mass_p, 1e-5, 1e-6));
  EXPECT_TRUE(all_close(b.mass_q, a.mass_q, 1e-5, 1e-6));
  EXPECT_TRUE(all_close(b.adv, a.adv, 1e-4, 1e-6));
  expect_all_nan(b.entropy_q, "entropy_q");
  expect_all_nan(b.kl_full, "kl_full");
  // log q(y): the full value when y is in either top set, NaN otherwise.
  TeacherRows t = topk_signal(z, x, k);
  const int32_t* sid = t.student_ids.data<int32_t>();
  const int32_t* tid = t.teacher_ids.data<int32_t>();
  int found = 0;
  for (int64_t r = 0; r < n; ++r) {
    bool in = std::find(sid + r * k, sid + (r + 1) * k, y[r]) != sid + (r + 1) * k ||
              std::find(tid + r * k, tid + (r + 1) * k, y[r]) != tid + (r + 1) * k;
    found += in;
    expect_near(b.logq_y[r], in ? a.logq_y[r] : kNaN, 1e-5, "logq_y");
  }
  EXPECT_GT(found, 0);
  EXPECT_LT(found, n);
}

// ---- teacher = student -------------------------------------------------------------------------

TEST(TokenStats, TeacherEqualsStudent) {
  const int64_t n = 9, V = 50;
  const int k = 7;
  Tensor z = random_tensor({n, V}, 77, -3.0f, 3.0f);
  std::vector<int32_t> y = random_ids({n}, static_cast<int32_t>(V), 78).to_vector_i32();
  TeacherRows full;
  full.mode = Signal::Full;
  full.logits = z;
  for (const Stats& s : {run(z, full, y, k), run(z, topk_signal(z, z, k), y, k)}) {
    for (int64_t r = 0; r < n; ++r) {
      if (!std::isnan(s.kl_full[r])) EXPECT_EQ(s.kl_full[r], 0.0);
      EXPECT_NEAR(s.kl_topk[r], 0.0, 1e-7);
      EXPECT_EQ(s.ratio[r], 1.0);
      EXPECT_NEAR(s.adv[r], 0.0, 1e-7);
      EXPECT_NEAR(s.mass_p[r], s.mass_q[r], 1e-6);
    }
  }
  Stats s = run(z, full, y, k);
  EXPECT_EQ(s.logq_y, s.logp_y);
  EXPECT_EQ(s.entropy_q, s.entropy_p);
}

// ---- Sampled mode ------------------------------------------------------------------------------

TEST(TokenStats, SampledModePassesThroughAndWritesNaN) {
  const int64_t n = 4, V = 5;
  Tensor z = Tensor::from_vector(
      [] {
        std::vector<float> v;
        for (int r = 0; r < 4; ++r) {
          auto row = log_of(kP);
          v.insert(v.end(), row.begin(), row.end());
        }
        return v;
      }(),
      {n, V});
  TeacherRows t;
  t.mode = Signal::Sampled;
  t.logq_y = Tensor::from_vector(std::vector<float>{-0.5f, -1.5f, -2.5f, -3.5f}, {n});
  Stats s = run(z, t, {0, 1, 2, 3}, 16);
  EXPECT_EQ(s.logq_y, (std::vector<double>{-0.5, -1.5, -2.5, -3.5}));
  EXPECT_TRUE(all_close(s.logp_y, {std::log(0.4), std::log(0.3), std::log(0.15), std::log(0.1)},
                        1e-6, 1e-6));
  EXPECT_TRUE(all_close(s.entropy_p, std::vector<double>(n, kHp), 1e-6, 1e-6));
  expect_all_nan(s.entropy_q, "entropy_q (not sent)");
  expect_all_nan(s.kl_full, "kl_full");
  expect_all_nan(s.kl_topk, "kl_topk");
  expect_all_nan(s.ratio, "overlap_ratio");
  expect_all_nan(s.mass_p, "overlap_mass_p");
  expect_all_nan(s.mass_q, "overlap_mass_q");
  expect_all_nan(s.adv, "overlap_adv");

  // The teacher's entropy, when sent, passes through.
  t.entropy_q = Tensor::from_vector(std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}, {n});
  s = run(z, t, {0, 1, 2, 3}, 16);
  EXPECT_EQ(s.entropy_q, (std::vector<double>{1.0, 2.0, 3.0, 4.0}));
}

// ---- outputs the caller did not ask for, and bad input ----------------------------------------

TEST(TokenStats, UndefinedOutputsAreSkipped) {
  const int64_t n = 6, V = 30;
  Tensor z = random_tensor({n, V}, 5, -2.0f, 2.0f), x = random_tensor({n, V}, 6, -2.0f, 2.0f);
  std::vector<int32_t> y = random_ids({n}, static_cast<int32_t>(V), 8).to_vector_i32();
  TeacherRows t;
  t.mode = Signal::Full;
  t.logits = x;
  Stats all = run(z, t, y, 4);
  TokenStats some;
  some.overlap_adv = Tensor::empty({n});
  some.logp_y = Tensor::empty({n});
  ops::token_stats(z, t, Tensor::from_vector(y, {n}), 4, some);
  EXPECT_EQ(to_double(some.overlap_adv), all.adv);
  EXPECT_EQ(to_double(some.logp_y), all.logp_y);
  EXPECT_FALSE(some.kl_full.defined());
  // No outputs at all is a no-op.
  TokenStats none;
  ops::token_stats(z, t, Tensor::from_vector(y, {n}), 4, none);
}

TEST(TokenStats, RejectsBadInput) {
  Tensor z = random_tensor({2, 5}, 1);
  TeacherRows t;
  t.mode = Signal::Full;
  t.logits = random_tensor({2, 5}, 2);
  TokenStats out = all_outputs(2);
  // y outside the vocabulary.
  EXPECT_THROW(ops::token_stats(z, t, Tensor::from_vector(std::vector<int32_t>{0, 5}, {2}), 2, out),
               opd::Error);
  // Teacher logits of another shape.
  t.logits = random_tensor({2, 6}, 2);
  EXPECT_THROW(ops::token_stats(z, t, Tensor::from_vector(std::vector<int32_t>{0, 1}, {2}), 2, out),
               opd::Error);
  // An output of the wrong length.
  t.logits = random_tensor({2, 5}, 2);
  out.kl_full = Tensor::empty({3});
  EXPECT_THROW(ops::token_stats(z, t, Tensor::from_vector(std::vector<int32_t>{0, 1}, {2}), 2, out),
               opd::Error);
  // TopK mode without the student's ids.
  TeacherRows k;
  k.mode = Signal::TopK;
  TokenStats o2 = all_outputs(2);
  EXPECT_THROW(ops::token_stats(z, k, Tensor::from_vector(std::vector<int32_t>{0, 1}, {2}), 2, o2),
               opd::Error);
}

}  // namespace
