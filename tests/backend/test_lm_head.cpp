// Vocabulary-chunked LM head (lm_head_stats, lm_head_cross_entropy_backward) against float64
// references over the full vocabulary, float64 finite differences, and the scratch bound
// (logits never exist as [N, V]).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/lm_head.hpp"
#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace {

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::testing;
namespace ops = opd::backend;

// Full-vocabulary float64 reference of one row: lse, logit at the target (0 when target < 0),
// entropy, and the softmax (for the backward reference).
struct RefRow {
  double lse = 0, target_logit = 0, entropy = 0;
  std::vector<double> p;
};

RefRow reference_row(const double* h, const double* w, int64_t D, int64_t V, int32_t target,
                     double temperature) {
  std::vector<double> l(V);
  for (int64_t v = 0; v < V; ++v) {
    double acc = 0;
    for (int64_t d = 0; d < D; ++d) acc += h[d] * w[v * D + d];
    l[v] = acc / temperature;
  }
  RefRow r;
  double m = *std::max_element(l.begin(), l.end());
  double s = 0;
  for (double x : l) s += std::exp(x - m);
  r.lse = m + std::log(s);
  r.p.resize(V);
  for (int64_t v = 0; v < V; ++v) {
    r.p[v] = std::exp(l[v] - r.lse);
    r.entropy -= r.p[v] * (l[v] - r.lse);
  }
  r.target_logit = target >= 0 ? l[target] : 0.0;
  return r;
}

struct Ref {
  std::vector<double> lse, target_logit, entropy;
};

Ref reference(const Tensor& h, const Tensor& w, const std::vector<int32_t>& targets, double temp) {
  const int64_t N = h.dim(0), D = h.dim(1), V = w.dim(0);
  std::vector<double> hd = to_double(h), wd = to_double(w);
  Ref r;
  for (int64_t n = 0; n < N; ++n) {
    RefRow row = reference_row(hd.data() + n * D, wd.data(), D, V, targets[n], temp);
    r.lse.push_back(row.lse);
    r.target_logit.push_back(row.target_logit);
    r.entropy.push_back(row.entropy);
  }
  return r;
}

// Random targets in [0, V) with every third row set to -1 ("no target").
Tensor targets_with_gaps(int64_t N, int32_t V, uint64_t seed) {
  Tensor t = random_ids({N}, V, seed);
  for (int64_t n = 0; n < N; n += 3) t.data<int32_t>()[n] = -1;
  return t;
}

ops::HeadStats make_stats(int64_t N, bool target, bool entropy) {
  ops::HeadStats s;
  s.lse = Tensor::empty({N});
  if (target) s.target_logit = Tensor::empty({N});
  if (entropy) s.entropy = Tensor::empty({N});
  return s;
}

TEST(LmHead, StatsMatchReferenceForAnyChunkAndTemperature) {
  // N > the row block (256) so that several row blocks run; V not a multiple of the chunks.
  const int64_t N = 300, D = 16, V = 50;
  Tensor h = random_tensor({N, D}, 1, -1.5f, 1.5f);
  Tensor w = random_tensor({V, D}, 2, -1.5f, 1.5f);
  Tensor targets = targets_with_gaps(N, V, 3);
  for (float temp : {1.0f, 0.7f, 2.5f}) {
    Ref ref = reference(h, w, targets.to_vector_i32(), temp);
    std::vector<double> first_lse;
    for (int64_t chunk : {int64_t(1), int64_t(7), V, int64_t(4096)}) {
      ops::HeadStats s = make_stats(N, true, true);
      ops::lm_head_stats(h, w, &targets, temp, chunk, s);
      SCOPED_TRACE(::testing::Message() << "temperature " << temp << " chunk " << chunk);
      EXPECT_TRUE(all_close(s.lse, ref.lse, 1e-5, 1e-6));
      EXPECT_TRUE(all_close(s.target_logit, ref.target_logit, 1e-5, 1e-6));
      EXPECT_TRUE(all_close(s.entropy, ref.entropy, 1e-5, 1e-6));
      if (first_lse.empty()) first_lse = to_double(s.lse);
      EXPECT_TRUE(all_close(s.lse, first_lse, 1e-5, 1e-6));  // chunking does not change results
    }
    for (int64_t n = 0; n < N; n += 3) EXPECT_EQ(ref.target_logit[n], 0.0);
  }
}

TEST(LmHead, OptionalOutputs) {
  const int64_t N = 9, D = 5, V = 23;
  Tensor h = random_tensor({N, D}, 4), w = random_tensor({V, D}, 5);
  Tensor targets = targets_with_gaps(N, V, 6);
  Ref ref = reference(h, w, targets.to_vector_i32(), 1.3);

  ops::HeadStats only_lse = make_stats(N, false, false);
  ops::lm_head_stats(h, w, nullptr, 1.3f, 4, only_lse);
  EXPECT_TRUE(all_close(only_lse.lse, ref.lse, 1e-5, 1e-6));

  ops::HeadStats lse_entropy = make_stats(N, false, true);  // targets given but not asked for
  ops::lm_head_stats(h, w, &targets, 1.3f, 4, lse_entropy);
  EXPECT_TRUE(all_close(lse_entropy.lse, ref.lse, 1e-5, 1e-6));
  EXPECT_TRUE(all_close(lse_entropy.entropy, ref.entropy, 1e-5, 1e-6));

  ops::HeadStats lse_target = make_stats(N, true, false);
  lse_target.target_logit.data<float>()[0] = 123.0f;  // row 0 has no target: overwritten with 0
  ops::lm_head_stats(h, w, &targets, 1.3f, 4, lse_target);
  EXPECT_TRUE(all_close(lse_target.target_logit, ref.target_logit, 1e-5, 1e-6));
  EXPECT_EQ(lse_target.target_logit.data<float>()[0], 0.0f);
}

TEST(LmHead, LargeLogitsStayFinite) {
  // Logits of a few hundred: the streaming max shift must keep everything finite and exact.
  const int64_t N = 4, D = 8, V = 37;
  Tensor h = random_tensor({N, D}, 7, 5.0f, 10.0f), w = random_tensor({V, D}, 8, 0.0f, 6.0f);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 36, 5, -1}, {N});
  Ref ref = reference(h, w, targets.to_vector_i32(), 1.0);
  ops::HeadStats s = make_stats(N, true, true);
  ops::lm_head_stats(h, w, &targets, 1.0f, 5, s);
  EXPECT_GT(ref.lse[0], 150.0);
  EXPECT_TRUE(all_close(s.lse, ref.lse, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(s.target_logit, ref.target_logit, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(s.entropy, ref.entropy, 1e-4, 1e-5));
}

// Loss sum_n d_loss[n] (lse[n] - target_logit[n]) in float64 of the parameters (h, w) packed.
double reference_loss(const std::vector<double>& hw, int64_t N, int64_t D, int64_t V,
                      const std::vector<int32_t>& targets, const std::vector<float>& d_loss,
                      double temp) {
  double loss = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    RefRow r = reference_row(hw.data() + n * D, hw.data() + N * D, D, V, targets[n], temp);
    loss += d_loss[n] * (r.lse - r.target_logit);
  }
  return loss;
}

TEST(LmHead, BackwardMatchesFiniteDifferences) {
  const int64_t N = 5, D = 4, V = 11;
  const float temp = 0.8f;
  Tensor h = random_tensor({N, D}, 9), w = random_tensor({V, D}, 10);
  std::vector<int32_t> tv = {2, -1, 10, 0, 5};
  std::vector<float> dv = {1.0f, 0.7f, 0.0f, -0.5f, 2.0f};  // rows 1 (no target), 2 (d 0): none
  Tensor targets = Tensor::from_vector(tv, {N});
  Tensor d_loss = Tensor::from_vector(dv, {N});

  std::vector<double> hw = to_double(h), wd = to_double(w);
  hw.insert(hw.end(), wd.begin(), wd.end());
  std::vector<double> grad = finite_difference(
      [&](const std::vector<double>& x) { return reference_loss(x, N, D, V, tv, dv, temp); }, hw);
  std::vector<double> g_h(grad.begin(), grad.begin() + N * D);
  std::vector<double> g_w(grad.begin() + N * D, grad.end());

  ops::HeadStats s = make_stats(N, false, false);
  ops::lm_head_stats(h, w, nullptr, temp, 3, s);
  for (int64_t chunk : {int64_t(1), int64_t(3), V, int64_t(100)}) {
    SCOPED_TRACE(::testing::Message() << "chunk " << chunk);
    Tensor dh = random_tensor({N, D}, 11);  // overwritten
    Tensor dw0 = random_tensor({V, D}, 12);
    Tensor dw = dw0.clone();  // accumulated into
    ops::lm_head_cross_entropy_backward(h, w, targets, s.lse, d_loss, temp, chunk, dh, dw);
    EXPECT_TRUE(all_close(dh, g_h, 1e-4, 1e-5));
    std::vector<double> added = to_double(dw), before = to_double(dw0);
    for (std::size_t i = 0; i < added.size(); ++i) added[i] -= before[i];
    EXPECT_TRUE(all_close(added, g_w, 1e-4, 1e-5));
    for (int64_t d = 0; d < D; ++d) {  // rows that contribute nothing have zero gradient
      EXPECT_EQ(dh.data<float>()[1 * D + d], 0.0f);
      EXPECT_EQ(dh.data<float>()[2 * D + d], 0.0f);
    }
  }
}

TEST(LmHead, BackwardManyRowBlocksMatchesAnalyticReference) {
  // N > 2 row blocks of active rows; compares against the closed form in float64:
  // dh[n] = d_n / T sum_v (p_nv - [v = t_n]) w_v, dw[v] = sum_n d_n / T (p_nv - [v = t_n]) h_n.
  const int64_t N = 600, D = 12, V = 29;
  const float temp = 1.7f;
  Tensor h = random_tensor({N, D}, 13), w = random_tensor({V, D}, 14);
  Tensor targets = targets_with_gaps(N, V, 15);
  Tensor d_loss = random_tensor({N}, 16, -1.0f, 1.0f);
  for (int64_t n = 1; n < N; n += 7) d_loss.data<float>()[n] = 0.0f;
  std::vector<double> hd = to_double(h), wd = to_double(w), dl = to_double(d_loss);
  std::vector<int32_t> tv = targets.to_vector_i32();
  std::vector<double> ref_dh(N * D, 0.0), ref_dw(V * D, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (tv[n] < 0) continue;
    RefRow r = reference_row(hd.data() + n * D, wd.data(), D, V, tv[n], temp);
    for (int64_t v = 0; v < V; ++v) {
      double g = dl[n] / temp * (r.p[v] - (v == tv[n] ? 1.0 : 0.0));
      for (int64_t d = 0; d < D; ++d) {
        ref_dh[n * D + d] += g * wd[v * D + d];
        ref_dw[v * D + d] += g * hd[n * D + d];
      }
    }
  }
  ops::HeadStats s = make_stats(N, false, false);
  ops::lm_head_stats(h, w, nullptr, temp, 8, s);
  for (int64_t chunk : {int64_t(5), V}) {
    Tensor dh = Tensor::empty({N, D}), dw = Tensor::zeros({V, D});
    ops::lm_head_cross_entropy_backward(h, w, targets, s.lse, d_loss, temp, chunk, dh, dw);
    EXPECT_TRUE(all_close(dh, ref_dh, 1e-4, 1e-5)) << "chunk " << chunk;
    EXPECT_TRUE(all_close(dw, ref_dw, 1e-4, 1e-5)) << "chunk " << chunk;
  }
}

TEST(LmHead, BackwardWithNoContributingRowLeavesDwAlone) {
  const int64_t N = 3, D = 4, V = 6;
  Tensor h = random_tensor({N, D}, 17), w = random_tensor({V, D}, 18);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{-1, 2, -1}, {N});
  Tensor d_loss = Tensor::from_vector(std::vector<float>{1.0f, 0.0f, 1.0f}, {N});
  ops::HeadStats s = make_stats(N, false, false);
  ops::lm_head_stats(h, w, nullptr, 1.0f, 4, s);
  Tensor dh = random_tensor({N, D}, 19);
  Tensor dw0 = random_tensor({V, D}, 20), dw = dw0.clone();
  ops::lm_head_cross_entropy_backward(h, w, targets, s.lse, d_loss, 1.0f, 4, dh, dw);
  EXPECT_EQ(dh.to_vector(), std::vector<float>(N * D, 0.0f));
  EXPECT_EQ(dw.to_vector(), dw0.to_vector());
}

TEST(LmHead, ScratchIsOneBlockNotNByV) {
  using opd::backend::cpu::lm_head_blocking;
  using opd::backend::cpu::lm_head_scratch_bytes;
  auto b = lm_head_blocking(4096, 32000, 4096);
  EXPECT_EQ(b.chunk, 4096);
  EXPECT_GE(b.rows_block, 64);
  EXPECT_LE(b.rows_block, 256);
  EXPECT_EQ(b.logits_floats(), b.rows_block * 4096);
  EXPECT_EQ(lm_head_blocking(10, 32000, 4096).rows_block, 10);  // clamped to N
  EXPECT_EQ(lm_head_blocking(10, 100, 4096).chunk, 100);        // clamped to V
  EXPECT_EQ(lm_head_blocking(10, 100, 1).chunk, 1);
  // Scratch for a 1M-row, 150k-vocabulary head stays a few MiB (plus 4 bytes per row in the
  // backward), far from the 600 GB of [N, V] logits.
  const int64_t big_n = 1 << 20, big_v = 150000;
  EXPECT_LE(lm_head_scratch_bytes(big_n, big_v, 4096, 4096, false), int64_t(8) << 20);
  EXPECT_LE(lm_head_scratch_bytes(big_n, big_v, 4096, 4096, true), int64_t(24) << 20);
}

long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

TEST(LmHead, LargeHeadNeverMaterialisesLogits) {
  // [N, V] fp32 logits would be 4096 * 32000 * 4 bytes = 500 MiB; the peak resident set of the
  // process may grow by far less than that, and sampled rows match the reference.
  const int64_t N = 4096, V = 32000, D = 8;
  Tensor h = random_tensor({N, D}, 21, -2.0f, 2.0f), w = random_tensor({V, D}, 22, -2.0f, 2.0f);
  Tensor targets = targets_with_gaps(N, V, 23);
  ops::HeadStats s = make_stats(N, true, true);
  const long before = peak_rss_kib();
  ops::lm_head_stats(h, w, &targets, 1.0f, 4096, s);
  const long grown_mib = (peak_rss_kib() - before) / 1024;
  EXPECT_LT(grown_mib, 64) << "lm_head_stats grew the peak RSS by " << grown_mib << " MiB";

  std::vector<double> hd = to_double(h), wd = to_double(w);
  std::vector<int32_t> tv = targets.to_vector_i32();
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(1234), int64_t(N - 1)}) {
    RefRow r = reference_row(hd.data() + n * D, wd.data(), D, V, tv[n], 1.0);
    EXPECT_NEAR(s.lse.data<float>()[n], r.lse, 1e-5 * std::abs(r.lse) + 1e-6) << "row " << n;
    EXPECT_NEAR(s.target_logit.data<float>()[n], r.target_logit, 1e-5) << "row " << n;
    EXPECT_NEAR(s.entropy.data<float>()[n], r.entropy, 1e-4 * r.entropy) << "row " << n;
  }
}

TEST(LmHead, MisuseThrows) {
  const int64_t N = 4, D = 3, V = 7;
  Tensor h = random_tensor({N, D}, 1), w = random_tensor({V, D}, 2);
  Tensor targets = random_ids({N}, V, 3);
  ops::HeadStats s = make_stats(N, true, true);
  Tensor w_bad = random_tensor({V, D + 1}, 4);
  EXPECT_THROW(ops::lm_head_stats(h, w_bad, &targets, 1.0f, 4, s), opd::Error);
  EXPECT_THROW(ops::lm_head_stats(h, w, nullptr, 1.0f, 4, s), opd::Error);  // target_logit
  EXPECT_THROW(ops::lm_head_stats(h, w, &targets, 0.0f, 4, s), opd::Error);
  EXPECT_THROW(ops::lm_head_stats(h, w, &targets, 1.0f, 0, s), opd::Error);
  Tensor out_of_vocab = Tensor::from_vector(std::vector<int32_t>{0, 1, 7, 2}, {N});
  EXPECT_THROW(ops::lm_head_stats(h, w, &out_of_vocab, 1.0f, 4, s), opd::Error);
  ops::HeadStats bad = make_stats(N + 1, false, false);
  EXPECT_THROW(ops::lm_head_stats(h, w, nullptr, 1.0f, 4, bad), opd::Error);
  ops::HeadStats no_lse;
  EXPECT_THROW(ops::lm_head_stats(h, w, nullptr, 1.0f, 4, no_lse), opd::Error);

  Tensor lse = Tensor::empty({N}), d_loss = Tensor::empty({N});
  Tensor dh = Tensor::empty({N, D}), dw = Tensor::empty({V, D});
  Tensor dw_bad = Tensor::empty({V + 1, D}), dh_bad = Tensor::empty({N, D + 1});
  EXPECT_THROW(ops::lm_head_cross_entropy_backward(h, w, targets, lse, d_loss, 1.0f, 4, dh, dw_bad),
               opd::Error);
  EXPECT_THROW(ops::lm_head_cross_entropy_backward(h, w, targets, lse, d_loss, 1.0f, 4, dh_bad, dw),
               opd::Error);
  EXPECT_THROW(
      ops::lm_head_cross_entropy_backward(h, w, out_of_vocab, lse, d_loss, 1.0f, 4, dh, dw),
      opd::Error);
  Tensor lse_bad = Tensor::empty({N + 1});
  EXPECT_THROW(ops::lm_head_cross_entropy_backward(h, w, targets, lse_bad, d_loss, 1.0f, 4, dh, dw),
               opd::Error);
}

}  // namespace
