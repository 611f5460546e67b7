// backend causal GQA attention: forward (out and P) against float64 loops for several q_pos
// patterns (training, continuation with S > T, padded rows, decode against a KV cache), masked
// probabilities exactly 0, decode equal to the matching row of a full forward, and the backward
// (dq, dk, dv) against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::Shape;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::finite_difference;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Case {
  const char* name;
  int64_t b, t, s, h, g, e;
  std::vector<int32_t> pos;  // [B, T]
};

struct RefOut {
  std::vector<double> out, probs;  // [B, T, H, E], [B, H, T, S]
};

RefOut ref_attention(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
                     const std::vector<double>& v, double scale) {
  RefOut r;
  r.out.assign(c.b * c.t * c.h * c.e, 0.0);
  r.probs.assign(c.b * c.h * c.t * c.s, 0.0);
  const int64_t rep = c.h / c.g;
  std::vector<double> sc(c.s);
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t h = 0; h < c.h; ++h)
      for (int64_t t = 0; t < c.t; ++t) {
        const int64_t g = h / rep;
        const int64_t nv = std::clamp<int64_t>(c.pos[b * c.t + t] + 1, 0, c.s);
        if (nv == 0) continue;
        double mx = -INFINITY;
        for (int64_t j = 0; j < nv; ++j) {
          double d = 0.0;
          for (int64_t x = 0; x < c.e; ++x)
            d += q[((b * c.t + t) * c.h + h) * c.e + x] * k[((b * c.s + j) * c.g + g) * c.e + x];
          sc[j] = scale * d;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < nv; ++j) sum += std::exp(sc[j] - mx);
        for (int64_t j = 0; j < nv; ++j) {
          const double p = std::exp(sc[j] - mx) / sum;
          r.probs[((b * c.h + h) * c.t + t) * c.s + j] = p;
          for (int64_t x = 0; x < c.e; ++x)
            r.out[((b * c.t + t) * c.h + h) * c.e + x] +=
                p * v[((b * c.s + j) * c.g + g) * c.e + x];
        }
      }
  return r;
}

Tensor filled(const Shape& shape, float value) {
  Tensor t = Tensor::empty(shape);
  ops::fill(t, value);
  return t;
}

std::vector<int32_t> causal_pos(int64_t b, int64_t t, int32_t offset = 0) {
  std::vector<int32_t> p;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j) p.push_back(static_cast<int32_t>(j) + offset);
  return p;
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  cs.push_back({"causal training", 2, 5, 5, 4, 2, 4, causal_pos(2, 5)});
  // b0 continues after a 3-token prefix (S > T); b1 is shorter: its last two rows are padding
  // that sees no key at all.
  cs.push_back({"prefix and padding", 2, 4, 7, 4, 2, 4, {3, 4, 5, 6, 0, 1, -1, -1}});
  // One decode step per sequence against a 9-slot cache, sequences of different lengths.
  cs.push_back({"decode", 3, 1, 9, 4, 2, 4, {2, 8, 5}});
  // Positions past the cache end see every key; multi-query (G = 1).
  cs.push_back({"mqa, positions past S", 1, 3, 4, 4, 1, 4, {1, 6, 9}});
  return cs;
}

}  // namespace

TEST(Attention, ForwardMatchesReferenceAndMasksExactly) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.e));
    Tensor q = random_tensor({c.b, c.t, c.h, c.e}, 1, -2.0f, 2.0f);
    Tensor k = random_tensor({c.b, c.s, c.g, c.e}, 2, -2.0f, 2.0f);
    Tensor v = random_tensor({c.b, c.s, c.g, c.e}, 3);
    Tensor pos = Tensor::from_vector(c.pos, {c.b, c.t});
    RefOut want = ref_attention(c, to_double(q), to_double(k), to_double(v), scale);

    Tensor out = filled({c.b, c.t, c.h, c.e}, kNaN);
    Tensor probs = filled({c.b, c.h, c.t, c.s}, kNaN);
    ops::attention_forward(q, k, v, pos, scale, out, &probs);
    EXPECT_TRUE(all_close(out, want.out, 1e-5, 1e-6));
    EXPECT_TRUE(all_close(probs, want.probs, 1e-5, 1e-7));
    auto p = probs.to_vector();
    for (std::size_t i = 0; i < p.size(); ++i)
      if (want.probs[i] == 0.0) EXPECT_EQ(p[i], 0.0f) << "masked probability " << i;

    Tensor out2 = filled({c.b, c.t, c.h, c.e}, kNaN);
    ops::attention_forward(q, k, v, pos, scale, out2, nullptr);  // no P kept
    EXPECT_TRUE(all_close(out2, want.out, 1e-5, 1e-6));
  }
}

TEST(Attention, LongSequencesCrossRowBlocks) {
  // T = 130 = two full row blocks and a 2-row tail; T = 65 leaves a single-row tail block.
  for (int64_t t : {65, 130}) {
    SCOPED_TRACE(t);
    Case c{"long", 2, t, t, 2, 1, 8, causal_pos(2, t)};
    c.pos[t + 3] = -1;  // a padded row in the second sequence
    Tensor q = random_tensor({c.b, c.t, c.h, c.e}, 4, -2.0f, 2.0f);
    Tensor k = random_tensor({c.b, c.s, c.g, c.e}, 5, -2.0f, 2.0f);
    Tensor v = random_tensor({c.b, c.s, c.g, c.e}, 6);
    Tensor pos = Tensor::from_vector(c.pos, {c.b, c.t});
    RefOut want = ref_attention(c, to_double(q), to_double(k), to_double(v), 0.5);
    Tensor out = filled({c.b, c.t, c.h, c.e}, kNaN);
    Tensor probs = filled({c.b, c.h, c.t, c.s}, kNaN);
    ops::attention_forward(q, k, v, pos, 0.5f, out, &probs);
    EXPECT_TRUE(all_close(out, want.out, 1e-5, 1e-6));
    EXPECT_TRUE(all_close(probs, want.probs, 1e-5, 1e-7));
    Tensor out2 = filled({c.b, c.t, c.h, c.e}, kNaN);
    ops::attention_forward(q, k, v, pos, 0.5f, out2, nullptr);
    EXPECT_TRUE(all_close(out2, want.out, 1e-5, 1e-6));
  }
}

TEST(Attention, DecodeEqualsRowOfFullForward) {
  // Two sequences of lengths 4 and 9 in a 12-slot cache; the new token sits at index `length`.
  // Cache slots past it hold NaN: a decode step must not read them.
  const int64_t S = 12, H = 4, G = 2, E = 8;
  const std::vector<int64_t> len{4, 9};
  const float scale = 0.35f;
  Tensor cache_k = random_tensor({2, S, G, E}, 7, -2.0f, 2.0f);
  Tensor cache_v = random_tensor({2, S, G, E}, 8);
  Tensor q_all = random_tensor({2, S, H, E}, 9, -2.0f, 2.0f);  // queries of every position
  Tensor q = Tensor::empty({2, 1, H, E});
  std::vector<float> expected;
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t n = len[b] + 1;
    // Full causal forward over the first n tokens of sequence b.
    Tensor fq = q_all.slice(b, b + 1).view({S, H * E}).slice(0, n).clone().view({1, n, H, E});
    Tensor fk = cache_k.slice(b, b + 1).view({S, G * E}).slice(0, n).clone().view({1, n, G, E});
    Tensor fv = cache_v.slice(b, b + 1).view({S, G * E}).slice(0, n).clone().view({1, n, G, E});
    Tensor fpos = Tensor::from_vector(causal_pos(1, n), {1, n});
    Tensor fout = Tensor::empty({1, n, H, E});
    ops::attention_forward(fq, fk, fv, fpos, scale, fout, nullptr);
    auto row = fout.view({n, H * E}).slice(n - 1, n).to_vector();
    expected.insert(expected.end(), row.begin(), row.end());
    float* qd = q.data<float>() + b * H * E;
    const float* src = fq.data<float>() + (n - 1) * H * E;
    std::copy(src, src + H * E, qd);
    float* kd = cache_k.data<float>() + (b * S + n) * G * E;
    float* vd = cache_v.data<float>() + (b * S + n) * G * E;
    std::fill(kd, kd + (S - n) * G * E, kNaN);
    std::fill(vd, vd + (S - n) * G * E, kNaN);
  }
  Tensor pos = Tensor::from_vector(
      std::vector<int32_t>{static_cast<int32_t>(len[0]), static_cast<int32_t>(len[1])}, {2, 1});
  std::vector<double> want(expected.begin(), expected.end());
  Tensor out = filled({2, 1, H, E}, kNaN);
  ops::attention_forward(q, cache_k, cache_v, pos, scale, out, nullptr);
  EXPECT_TRUE(all_close(out, want, 1e-5, 1e-6));
  Tensor probs = filled({2, H, 1, S}, kNaN);
  ops::attention_forward(q, cache_k, cache_v, pos, scale, out, &probs);
  EXPECT_TRUE(all_close(out, want, 1e-5, 1e-6));
  auto p = probs.to_vector();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < H; ++h) {
      double sum = 0.0;
      for (int64_t j = 0; j < S; ++j) {
        const float pj = p[(b * H + h) * S + j];
        if (j > len[b]) EXPECT_EQ(pj, 0.0f);
        sum += pj;
      }
      EXPECT_NEAR(sum, 1.0, 1e-6);
    }
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
  std::vector<Case> cs = cases();
  cs.push_back({"single-row tail block", 1, 65, 65, 2, 1, 2, causal_pos(1, 65)});
  for (const Case& c : cs) {
    SCOPED_TRACE(c.name);
    const double scale = 0.6;
    Tensor q = random_tensor({c.b, c.t, c.h, c.e}, 11, -1.5f, 1.5f);
    Tensor k = random_tensor({c.b, c.s, c.g, c.e}, 12, -1.5f, 1.5f);
    Tensor v = random_tensor({c.b, c.s, c.g, c.e}, 13);
    Tensor proj = random_tensor({c.b, c.t, c.h, c.e}, 14);  // L = sum(proj * out)
    Tensor pos = Tensor::from_vector(c.pos, {c.b, c.t});
    auto qd = to_double(q), kd = to_double(k), vd = to_double(v), pd = to_double(proj);
    auto loss = [&](const std::vector<double>& qq, const std::vector<double>& kk,
                    const std::vector<double>& vv) {
      auto out = ref_attention(c, qq, kk, vv, scale).out;
      double l = 0.0;
      for (std::size_t i = 0; i < out.size(); ++i) l += pd[i] * out[i];
      return l;
    };
    auto fd_q =
        finite_difference([&](const std::vector<double>& x) { return loss(x, kd, vd); }, qd);
    auto fd_k =
        finite_difference([&](const std::vector<double>& x) { return loss(qd, x, vd); }, kd);
    auto fd_v =
        finite_difference([&](const std::vector<double>& x) { return loss(qd, kd, x); }, vd);

    Tensor out = Tensor::empty({c.b, c.t, c.h, c.e});
    Tensor probs = Tensor::empty({c.b, c.h, c.t, c.s});
    ops::attention_forward(q, k, v, pos, static_cast<float>(scale), out, &probs);
    Tensor dq = filled(q.shape(), kNaN), dk = filled(k.shape(), kNaN), dv = filled(v.shape(), kNaN);
    ops::attention_backward(q, k, v, probs, proj, static_cast<float>(scale), dq, dk, dv);
    EXPECT_TRUE(all_close(dq, fd_q, 1e-4, 1e-5));
    EXPECT_TRUE(all_close(dk, fd_k, 1e-4, 1e-5));
    EXPECT_TRUE(all_close(dv, fd_v, 1e-4, 1e-5));

    // Keeping only each row's log-sum-exp: the same forward, and P recomputed in the backward.
    Tensor out2 = Tensor::empty(out.shape()), lse = filled({c.b, c.h, c.t}, kNaN);
    ops::attention_forward(q, k, v, pos, static_cast<float>(scale), out2, nullptr, &lse);
    EXPECT_EQ(out2.to_vector(), out.to_vector());
    for (int64_t i = 0; i < lse.numel(); ++i) EXPECT_FALSE(std::isnan(lse.data<float>()[i]));
    Tensor dq2 = filled(q.shape(), kNaN), dk2 = filled(k.shape(), kNaN), dv2 = filled(v.shape(), kNaN);
    ops::attention_backward_from_lse(q, k, v, pos, lse, proj, static_cast<float>(scale), dq2, dk2,
                                     dv2);
    EXPECT_TRUE(all_close(dq2, fd_q, 1e-4, 1e-5));
    EXPECT_TRUE(all_close(dk2, fd_k, 1e-4, 1e-5));
    EXPECT_TRUE(all_close(dv2, fd_v, 1e-4, 1e-5));
  }
}

TEST(Attention, MisuseThrows) {
  Tensor q = random_tensor({1, 2, 3, 4}, 20);  // H = 3
  Tensor k = random_tensor({1, 5, 2, 4}, 21);  // G = 2 does not divide H
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{0, 1}, {1, 2});
  Tensor out = Tensor::empty({1, 2, 3, 4});
  EXPECT_THROW(ops::attention_forward(q, k, k, pos, 1.0f, out, nullptr), opd::Error);
  Tensor q4 = random_tensor({1, 2, 4, 4}, 22), out4 = Tensor::empty({1, 2, 4, 4});
  Tensor v_bad = random_tensor({1, 4, 2, 4}, 23);
  EXPECT_THROW(ops::attention_forward(q4, k, v_bad, pos, 1.0f, out4, nullptr), opd::Error);
  Tensor pos_bad = Tensor::from_vector(std::vector<int32_t>{0, 1, 2}, {1, 3});
  EXPECT_THROW(ops::attention_forward(q4, k, k, pos_bad, 1.0f, out4, nullptr), opd::Error);
  Tensor probs_bad = Tensor::empty({1, 4, 2, 4});
  EXPECT_THROW(ops::attention_forward(q4, k, k, pos, 1.0f, out4, &probs_bad), opd::Error);
  Tensor probs = Tensor::empty({1, 4, 2, 5});
  ops::attention_forward(q4, k, k, pos, 1.0f, out4, &probs);
  Tensor dq = Tensor::empty({1, 2, 4, 4}), dk = Tensor::empty({1, 5, 2, 4});
  Tensor dv_bad = Tensor::empty({1, 5, 1, 4});
  EXPECT_THROW(ops::attention_backward(q4, k, k, probs, out4, 1.0f, dq, dk, dv_bad), opd::Error);
}

// bf16 operands (mixed precision): on the CPU exactly the f32 attention of q, k, v and d_out
// rounded to bf16, which differs from the f32 attention of the unrounded inputs.
TEST(Attention, Bf16OperandsAreTheInputsRoundedToBf16) {
  const auto bf16 = opd::core::DType::BF16;
  auto rounded = [](const Tensor& x) {
    Tensor half = Tensor::empty(x.shape(), opd::core::DType::BF16);
    ops::cast(x, half);
    Tensor wide = Tensor::empty(x.shape());
    ops::cast(half, wide);
    return wide;
  };
  const int64_t B = 2, T = 9, H = 4, G = 2, E = 8;
  const Tensor q = random_tensor({B, T, H, E}, 40, -2.0f, 2.0f);
  const Tensor k = random_tensor({B, T, G, E}, 41, -2.0f, 2.0f);
  const Tensor v = random_tensor({B, T, G, E}, 42), d_out = random_tensor({B, T, H, E}, 43);
  std::vector<int32_t> p;
  for (int64_t i = 0; i < B * T; ++i) p.push_back(static_cast<int32_t>(i % T));
  const Tensor pos = Tensor::from_vector(p, {B, T});
  const float scale = 0.35f;
  struct Result {
    Tensor out, lse, dq, dk, dv;
  };
  auto run = [&](const Tensor& qq, const Tensor& kk, const Tensor& vv, const Tensor& dd,
                 opd::core::DType operands) {
    Result r{Tensor::empty(q.shape()), Tensor::empty({B, H, T}), Tensor::empty(q.shape()),
             Tensor::empty(k.shape()), Tensor::empty(k.shape())};
    ops::attention_forward(qq, kk, vv, pos, scale, r.out, nullptr, &r.lse, operands);
    ops::attention_backward_from_lse(qq, kk, vv, pos, r.lse, dd, scale, r.dq, r.dk, r.dv,
                                     operands);
    return r;
  };
  const Result got = run(q, k, v, d_out, bf16);
  const Result want =
      run(rounded(q), rounded(k), rounded(v), rounded(d_out), opd::core::DType::F32);
  const Result exact = run(q, k, v, d_out, opd::core::DType::F32);
  for (auto m : {&Result::out, &Result::lse, &Result::dq, &Result::dk, &Result::dv}) {
    EXPECT_EQ((got.*m).to_vector(), (want.*m).to_vector());
    EXPECT_NE((got.*m).to_vector(), (exact.*m).to_vector());
    EXPECT_TRUE(all_close(got.*m, to_double(exact.*m), 2e-2, 2e-2));
  }
  Tensor out = Tensor::empty(q.shape());
  EXPECT_THROW(ops::attention_forward(q, k, v, pos, scale, out, nullptr, nullptr,
                                      opd::core::DType::I32),
               opd::Error);
}
