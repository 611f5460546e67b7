// sample_rows: greedy, hand-computed inverse-CDF cases for temperature, top-k and top-p, exact
// log-probs, a full-sort float64 reference on large rows, a statistical check of the sampled
// distribution, row independence and determinism, and the vocabulary limit (ids past it never
// chosen, top-k/top-p over the allowed ids).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace {

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::testing;
namespace ops = opd::backend;

struct Draws {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
};

Draws sample(const std::vector<float>& logits, int64_t V, float temperature, int top_k, float top_p,
             const std::vector<float>& u, int64_t vocab_limit = 0) {
  const int64_t B = static_cast<int64_t>(u.size());
  Tensor x = Tensor::from_vector(logits, {B, V});
  Tensor uniforms = Tensor::from_vector(u, {B});
  Tensor ids = Tensor::empty({B}, DType::I32), lp = Tensor::empty({B});
  ops::sample_rows(x, temperature, top_k, top_p, uniforms, ids, lp, vocab_limit);
  return {ids.to_vector_i32(), lp.to_vector()};
}

// The same row repeated once per uniform.
Draws sample_row(const std::vector<float>& row, float temperature, int top_k, float top_p,
                 const std::vector<float>& u, int64_t vocab_limit = 0) {
  std::vector<float> x;
  for (std::size_t b = 0; b < u.size(); ++b) x.insert(x.end(), row.begin(), row.end());
  return sample(x, static_cast<int64_t>(row.size()), temperature, top_k, top_p, u, vocab_limit);
}

std::vector<float> log_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(static_cast<float>(std::log(v)));
  return l;
}

// Uniforms in [0, 1) with 24 random bits (never 1.0).
std::vector<float> uniforms(std::size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<float> u(n);
  for (float& v : u) v = static_cast<float>(gen() >> 40) * (1.0f / 16777216.0f);
  return u;
}

// Float64 reference with a full sort: the final distribution over ids (0 outside the support)
// and the inverse-CDF choice at u.
struct RefDist {
  std::vector<int> order;  // the support, in descending-probability order
  std::vector<double> q;   // q[i] = probability of order[i]
};

RefDist reference_distribution(const std::vector<float>& x, float temperature, int top_k,
                               float top_p) {
  const int V = static_cast<int>(x.size());
  RefDist r;
  r.order.resize(V);
  std::iota(r.order.begin(), r.order.end(), 0);
  std::stable_sort(r.order.begin(), r.order.end(), [&](int a, int b) { return x[a] > x[b]; });
  if (top_k > 0 && top_k < V) r.order.resize(top_k);
  const double xmax = x[r.order[0]];
  std::vector<double> w;
  double z = 0;
  for (int id : r.order) {
    w.push_back(std::exp((x[id] - xmax) / temperature));
    z += w.back();
  }
  if (top_p < 1.0f) {
    double c = 0;
    std::size_t len = 0;
    while (len < w.size()) {
      c += w[len++];
      if (c >= top_p * z) break;
    }
    r.order.resize(len);
    w.resize(len);
    z = c;
  }
  for (double v : w) r.q.push_back(v / z);
  return r;
}

std::pair<int, double> reference_choice(const RefDist& d, double u) {
  double c = 0;
  for (std::size_t i = 0; i < d.order.size(); ++i) {
    c += d.q[i];
    if (u < c) return {d.order[i], std::log(d.q[i])};
  }
  return {d.order.back(), std::log(d.q.back())};
}

TEST(Sampling, GreedyIsArgmaxWithLowestIdOnTies) {
  std::vector<float> x = {0.1f, 2.0f, 3.5f, -1.0f, 3.5f, 0.0f,    // row 0: tie at 2 and 4
                          -5.f, -4.f, -3.f, -2.f,  -1.f, -0.5f};  // row 1: last
  for (float t : {0.0f, -1.0f}) {
    Draws d = sample(x, 6, t, 2, 0.5f, {0.99f, 0.3f});
    EXPECT_EQ(d.ids, (std::vector<int32_t>{2, 5}));
    EXPECT_EQ(d.logprobs, (std::vector<float>{0.0f, 0.0f}));
  }
}

// Probabilities 0.1, 0.4, 0.2, 0.3 for ids 0..3: the descending order is 1, 3, 2, 0 with
// cumulative mass 0.4, 0.7, 0.9, 1.0.
const std::vector<double> kProbs = {0.1, 0.4, 0.2, 0.3};

TEST(Sampling, InverseCdfInDescendingOrder) {
  Draws d = sample_row(log_of(kProbs), 1.0f, 0, 1.0f, {0.0f, 0.39f, 0.41f, 0.69f, 0.75f, 0.95f});
  EXPECT_EQ(d.ids, (std::vector<int32_t>{1, 1, 3, 3, 2, 0}));
  const std::vector<double> lp = {std::log(0.4), std::log(0.4), std::log(0.3),
                                  std::log(0.3), std::log(0.2), std::log(0.1)};
  for (std::size_t i = 0; i < lp.size(); ++i) EXPECT_NEAR(d.logprobs[i], lp[i], 1e-6) << i;
}

TEST(Sampling, TopKRenormalises) {
  // top_k = 2 keeps ids 1 and 3 with 4/7 and 3/7.
  Draws d = sample_row(log_of(kProbs), 1.0f, 2, 1.0f, {0.5f, 0.6f, 0.99f});
  EXPECT_EQ(d.ids, (std::vector<int32_t>{1, 3, 3}));
  EXPECT_NEAR(d.logprobs[0], std::log(4.0 / 7.0), 1e-6);
  EXPECT_NEAR(d.logprobs[1], std::log(3.0 / 7.0), 1e-6);
  // top_k = 1 is greedy in the choice, with probability 1.
  Draws g = sample_row(log_of(kProbs), 1.0f, 1, 1.0f, {0.99f});
  EXPECT_EQ(g.ids[0], 1);
  EXPECT_NEAR(g.logprobs[0], 0.0, 1e-7);
  // top_k >= V keeps everything.
  Draws all = sample_row(log_of(kProbs), 1.0f, 9, 1.0f, {0.95f});
  EXPECT_EQ(all.ids[0], 0);
  EXPECT_NEAR(all.logprobs[0], std::log(0.1), 1e-6);
}

TEST(Sampling, TopPKeepsSmallestPrefixReachingMass) {
  // top_p = 0.65: 0.4 < 0.65 <= 0.7, so ids {1, 3} with 4/7, 3/7.
  Draws a = sample_row(log_of(kProbs), 1.0f, 0, 0.65f, {0.5f, 0.6f});
  EXPECT_EQ(a.ids, (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(a.logprobs[1], std::log(3.0 / 7.0), 1e-6);
  // top_p = 0.75: ids {1, 3, 2} with 4/9, 3/9, 2/9 (cumulative 0.444, 0.778, 1).
  Draws b = sample_row(log_of(kProbs), 1.0f, 0, 0.75f, {0.4f, 0.5f, 0.8f, 0.999f});
  EXPECT_EQ(b.ids, (std::vector<int32_t>{1, 3, 2, 2}));
  EXPECT_NEAR(b.logprobs[2], std::log(2.0 / 9.0), 1e-6);
  // A tiny top_p keeps the top token only.
  for (float p : {0.0f, 0.1f}) {
    Draws c = sample_row(log_of(kProbs), 1.0f, 0, p, {0.9f});
    EXPECT_EQ(c.ids[0], 1);
    EXPECT_NEAR(c.logprobs[0], 0.0, 1e-7);
  }
  // top_p applies to the top-k distribution renormalised: the top 3 are 4/9, 3/9, 2/9
  // (cumulative 0.444, 0.778, 1). With top_p = 0.75 two tokens suffice; measured on the
  // unrenormalised mass (0.4, 0.7, 0.9) it would take three.
  Draws d = sample_row(log_of(kProbs), 1.0f, 3, 0.75f, {0.99f});
  EXPECT_EQ(d.ids[0], 3);  // 0.778 >= 0.75: {1, 3} renormalised to 4/7, 3/7
  EXPECT_NEAR(d.logprobs[0], std::log(3.0 / 7.0), 1e-6);
  Draws e = sample_row(log_of(kProbs), 1.0f, 3, 0.8f, {0.99f});
  EXPECT_EQ(e.ids[0], 2);  // 0.778 < 0.8: all three
  EXPECT_NEAR(e.logprobs[0], std::log(2.0 / 9.0), 1e-6);
}

TEST(Sampling, TemperatureScalesLogits) {
  // T = 0.5 squares the probabilities: 0.01, 0.16, 0.04, 0.09 over 0.30 -> order 1, 3, 2, 0
  // with cumulative 0.533, 0.833, 0.967, 1.
  Draws a = sample_row(log_of(kProbs), 0.5f, 0, 1.0f, {0.5f, 0.8f, 0.9f, 0.98f});
  EXPECT_EQ(a.ids, (std::vector<int32_t>{1, 3, 2, 0}));
  EXPECT_NEAR(a.logprobs[2], std::log(0.04 / 0.30), 1e-6);
  EXPECT_NEAR(a.logprobs[3], std::log(0.01 / 0.30), 1e-6);
  // T = 2 takes square roots.
  double z = 0;
  for (double p : kProbs) z += std::sqrt(p);
  Draws b = sample_row(log_of(kProbs), 2.0f, 0, 1.0f, {0.999f});
  EXPECT_EQ(b.ids[0], 0);
  EXPECT_NEAR(b.logprobs[0], std::log(std::sqrt(0.1) / z), 1e-6);
}

TEST(Sampling, TiesFollowIdOrder) {
  // Four equal logits: order 0, 1, 2, 3 with cumulative 0.25, 0.5, 0.75, 1.
  Draws d = sample_row({1.f, 1.f, 1.f, 1.f}, 1.0f, 0, 1.0f, {0.1f, 0.3f, 0.6f, 0.8f});
  EXPECT_EQ(d.ids, (std::vector<int32_t>{0, 1, 2, 3}));
  for (float l : d.logprobs) EXPECT_NEAR(l, std::log(0.25), 1e-6);
  // top_k = 2 among ties keeps the lower ids.
  Draws k = sample_row({1.f, 1.f, 1.f, 1.f}, 1.0f, 2, 1.0f, {0.9f});
  EXPECT_EQ(k.ids[0], 1);
  EXPECT_NEAR(k.logprobs[0], std::log(0.5), 1e-6);
}

TEST(Sampling, LargeRowsMatchFullSortReference) {
  // V well above the bisection's sort threshold; logits on a coarse grid so that ties occur.
  const int64_t V = 5000, B = 64;
  Tensor xt = random_tensor({B, V}, 31, -6.0f, 6.0f);
  std::vector<float> x = xt.to_vector();
  for (float& v : x) v = std::round(v * 20.0f) / 20.0f;
  std::vector<float> u = uniforms(B, 32);
  struct Case {
    float t;
    int k;
    float p;
  };
  for (Case c : {Case{1.0f, 0, 1.0f}, Case{0.7f, 0, 0.9f}, Case{1.3f, 100, 1.0f},
                 Case{1.0f, 1000, 0.5f}, Case{2.0f, 0, 0.99f}}) {
    SCOPED_TRACE(::testing::Message() << "T " << c.t << " k " << c.k << " p " << c.p);
    Draws d = sample(x, V, c.t, c.k, c.p, u);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<float> row(x.begin() + b * V, x.begin() + (b + 1) * V);
      auto [id, lp] = reference_choice(reference_distribution(row, c.t, c.k, c.p), u[b]);
      EXPECT_EQ(d.ids[b], id) << "row " << b;
      EXPECT_NEAR(d.logprobs[b], lp, 1e-5 * std::max(1.0, std::abs(lp))) << "row " << b;
    }
  }
}

// Draws 20000 tokens from one row and compares the counts with the expected distribution
// (chi-square with at most 4 degrees of freedom; 25 is far in the tail, p < 1e-4).
void check_distribution(const std::vector<double>& probs, float temperature, int top_k, float top_p,
                        std::size_t expected_support) {
  const std::size_t n = 20000;
  std::vector<float> row = log_of(probs);
  RefDist ref = reference_distribution(row, temperature, top_k, top_p);
  ASSERT_EQ(ref.order.size(), expected_support);
  std::vector<double> q(probs.size(), 0.0);
  for (std::size_t i = 0; i < ref.order.size(); ++i) q[ref.order[i]] = ref.q[i];

  Draws d = sample_row(row, temperature, top_k, top_p, uniforms(n, 41));
  std::vector<double> count(probs.size(), 0.0);
  for (std::size_t b = 0; b < n; ++b) {
    ASSERT_GT(q[d.ids[b]], 0.0) << "token " << d.ids[b] << " is outside the support";
    count[d.ids[b]] += 1;
    ASSERT_NEAR(d.logprobs[b], std::log(q[d.ids[b]]), 1e-6);
  }
  double chi2 = 0;
  for (std::size_t v = 0; v < q.size(); ++v)
    if (q[v] > 0) chi2 += (count[v] - n * q[v]) * (count[v] - n * q[v]) / (n * q[v]);
  EXPECT_LT(chi2, 25.0);
}

const std::vector<double> kFive = {0.05, 0.3, 0.1, 0.4, 0.15};

TEST(Sampling, StatisticsTopK3) { check_distribution(kFive, 1.0f, 3, 1.0f, 3); }

TEST(Sampling, StatisticsTopP08) {
  check_distribution(kFive, 1.0f, 0, 0.8f, 3);  // 0.4 + 0.3 < 0.8 <= 0.85
  check_distribution(kFive, 2.0f, 0, 0.8f, 4);  // flatter at T = 2: four tokens
}

TEST(Sampling, StatisticsFullDistribution) { check_distribution(kFive, 1.0f, 0, 1.0f, 5); }

TEST(Sampling, RowsAreIndependentAndDeterministic) {
  const int64_t V = 300, B = 5;
  std::vector<float> x = random_tensor({B, V}, 51, -3.0f, 3.0f).to_vector();
  std::vector<float> u = uniforms(B, 52);
  Draws batch = sample(x, V, 0.9f, 50, 0.95f, u);
  Draws again = sample(x, V, 0.9f, 50, 0.95f, u);
  EXPECT_EQ(batch.ids, again.ids);
  EXPECT_EQ(batch.logprobs, again.logprobs);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<float> row(x.begin() + b * V, x.begin() + (b + 1) * V);
    Draws alone = sample(row, V, 0.9f, 50, 0.95f, {u[b]});
    EXPECT_EQ(alone.ids[0], batch.ids[b]) << "row " << b;
    EXPECT_EQ(alone.logprobs[0], batch.logprobs[b]) << "row " << b;
  }
  // Reversing the batch reverses the results.
  std::vector<float> xr, ur;
  for (int64_t b = B - 1; b >= 0; --b) {
    xr.insert(xr.end(), x.begin() + b * V, x.begin() + (b + 1) * V);
    ur.push_back(u[b]);
  }
  Draws rev = sample(xr, V, 0.9f, 50, 0.95f, ur);
  for (int64_t b = 0; b < B; ++b) EXPECT_EQ(rev.ids[B - 1 - b], batch.ids[b]);
}

// kProbs over ids 0..3, then two "padded" ids 4 and 5 (past a tokenizer's vocabulary of 4)
// with logits far above the rest: unrestricted, they take almost all the mass.
std::vector<float> padded_row() {
  std::vector<float> row = log_of(kProbs);
  row.push_back(12.0f);
  row.push_back(11.0f);
  return row;
}

TEST(Sampling, VocabLimitNeverChoosesIdsPastIt) {
  const std::vector<float> row = padded_row();
  // Unrestricted, the padded ids win (the test's premise).
  EXPECT_EQ(sample_row(row, 0.0f, 0, 1.0f, {0.5f}).ids[0], 4);
  EXPECT_EQ(sample_row(row, 1.0f, 0, 1.0f, {0.5f}).ids[0], 4);
  // Greedy picks the best allowed id.
  for (float t : {0.0f, -1.0f}) {
    Draws g = sample_row(row, t, 0, 1.0f, {0.99f}, 4);
    EXPECT_EQ(g.ids[0], 1);
    EXPECT_EQ(g.logprobs[0], 0.0f);
  }
  // Sampling is the allowed ids' own distribution: kProbs exactly, as in
  // InverseCdfInDescendingOrder.
  Draws d = sample_row(row, 1.0f, 0, 1.0f, {0.0f, 0.39f, 0.41f, 0.69f, 0.75f, 0.95f, 0.999f}, 4);
  EXPECT_EQ(d.ids, (std::vector<int32_t>{1, 1, 3, 3, 2, 0, 0}));
  const std::vector<double> lp = {0.4, 0.4, 0.3, 0.3, 0.2, 0.1, 0.1};
  for (std::size_t i = 0; i < lp.size(); ++i) EXPECT_NEAR(d.logprobs[i], std::log(lp[i]), 1e-6) << i;
  // A limit equal to V changes nothing, bit for bit.
  const std::vector<float> u = uniforms(64, 61);
  Draws whole = sample_row(row, 0.8f, 3, 0.9f, u);
  Draws at_v = sample_row(row, 0.8f, 3, 0.9f, u, 6);
  EXPECT_EQ(whole.ids, at_v.ids);
  EXPECT_EQ(whole.logprobs, at_v.logprobs);
}

TEST(Sampling, VocabLimitTopKAndTopPCountAllowedIdsOnly) {
  const std::vector<float> row = padded_row();
  // top_k = 2 over the allowed ids: 1 and 3 with 4/7 and 3/7 (over all ids it would be 4 and 5).
  Draws k = sample_row(row, 1.0f, 2, 1.0f, {0.5f, 0.6f, 0.99f}, 4);
  EXPECT_EQ(k.ids, (std::vector<int32_t>{1, 3, 3}));
  EXPECT_NEAR(k.logprobs[0], std::log(4.0 / 7.0), 1e-6);
  EXPECT_NEAR(k.logprobs[1], std::log(3.0 / 7.0), 1e-6);
  // top_k at or above the limit (below V, or V itself) keeps every allowed id.
  for (int top_k : {4, 5, 6}) {
    Draws all = sample_row(row, 1.0f, top_k, 1.0f, {0.95f}, 4);
    EXPECT_EQ(all.ids[0], 0) << top_k;
    EXPECT_NEAR(all.logprobs[0], std::log(0.1), 1e-6) << top_k;
  }
  // top_p on the allowed mass: 0.65 keeps {1, 3} (0.4 < 0.65 <= 0.7), 0.75 keeps {1, 3, 2}.
  Draws p = sample_row(row, 1.0f, 0, 0.65f, {0.5f, 0.6f}, 4);
  EXPECT_EQ(p.ids, (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(p.logprobs[1], std::log(3.0 / 7.0), 1e-6);
  Draws q = sample_row(row, 1.0f, 0, 0.75f, {0.8f, 0.999f}, 4);
  EXPECT_EQ(q.ids, (std::vector<int32_t>{2, 2}));
  EXPECT_NEAR(q.logprobs[0], std::log(2.0 / 9.0), 1e-6);
  // A limit of 1 leaves id 0 alone, with probability 1.
  Draws one = sample_row(row, 1.0f, 0, 1.0f, {0.7f}, 1);
  EXPECT_EQ(one.ids[0], 0);
  EXPECT_NEAR(one.logprobs[0], 0.0, 1e-7);
  // Allowed ids all -inf: the argmax fallback still stays below the limit.
  const float ninf = -INFINITY;
  Draws masked = sample_row({ninf, ninf, ninf, 3.0f, 2.0f}, 1.0f, 0, 1.0f, {0.5f}, 3);
  EXPECT_LT(masked.ids[0], 3);
}

TEST(Sampling, VocabLimitLargeRowsMatchReferenceOnThePrefix) {
  const int64_t V = 5000, B = 32, limit = 4100;
  std::vector<float> x = random_tensor({B, V}, 71, -6.0f, 6.0f).to_vector();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = limit; j < V; ++j) x[b * V + j] += 8.0f;  // the padded ids dominate
  std::vector<float> u = uniforms(B, 72);
  for (auto [t, k, p] : {std::tuple{1.0f, 0, 1.0f}, std::tuple{0.7f, 200, 0.9f},
                         std::tuple{1.3f, 0, 0.5f}}) {
    SCOPED_TRACE(::testing::Message() << "T " << t << " k " << k << " p " << p);
    Draws d = sample(x, V, t, k, p, u, limit);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<float> allowed(x.begin() + b * V, x.begin() + b * V + limit);
      auto [id, lp] = reference_choice(reference_distribution(allowed, t, k, p), u[b]);
      EXPECT_EQ(d.ids[b], id) << "row " << b;
      EXPECT_NEAR(d.logprobs[b], lp, 1e-5 * std::max(1.0, std::abs(lp))) << "row " << b;
    }
  }
}

TEST(Sampling, MisuseThrows) {
  Tensor x = random_tensor({3, 5}, 1);
  Tensor u = Tensor::from_vector(std::vector<float>{0.1f, 0.2f, 0.3f}, {3});
  Tensor ids = Tensor::empty({3}, DType::I32), lp = Tensor::empty({3});
  Tensor u2 = Tensor::from_vector(std::vector<float>{0.1f, 0.2f}, {2});
  EXPECT_THROW(ops::sample_rows(x, 1.0f, 0, 1.0f, u2, ids, lp), opd::Error);
  Tensor ids_f = Tensor::empty({3});
  EXPECT_THROW(ops::sample_rows(x, 1.0f, 0, 1.0f, u, ids_f, lp), opd::Error);
  Tensor lp4 = Tensor::empty({4});
  EXPECT_THROW(ops::sample_rows(x, 1.0f, 0, 1.0f, u, ids, lp4), opd::Error);
  Tensor u_one = Tensor::from_vector(std::vector<float>{0.1f, 1.0f, 0.3f}, {3});
  EXPECT_THROW(ops::sample_rows(x, 1.0f, 0, 1.0f, u_one, ids, lp), opd::Error);
  Tensor x1 = random_tensor({15}, 2);
  EXPECT_THROW(ops::sample_rows(x1, 1.0f, 0, 1.0f, u, ids, lp), opd::Error);
  EXPECT_THROW(ops::sample_rows(x, 1.0f, 0, 1.0f, u, ids, lp, 6), opd::Error);   // > V
  EXPECT_THROW(ops::sample_rows(x, 1.0f, 0, 1.0f, u, ids, lp, -1), opd::Error);
}

}  // namespace
