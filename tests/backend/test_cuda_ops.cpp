// The CUDA backend against the CPU backend (DESIGN.md §10): every op with a CUDA kernel runs on
// the same random inputs on both, fp32 results within 1e-5 relative (sums in other orders), the
// accumulating outputs checked as accumulations; bf16 operands (mixed precision) too. Runs on a GPU machine (tests/gpu/run.sh); skips
// where opd was built without CUDA or no device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "backend/ops.hpp"
#include "testing/gpu.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
using opd::core::Device;
using opd::core::DType;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::to_cpu;
using opd::testing::to_gpu;
using opd::testing::random_ids;
using opd::testing::random_tensor;
using opd::testing::to_double;

namespace {

::testing::AssertionResult same(const Tensor& gpu, const Tensor& cpu, double rtol = 1e-5,
                                double atol = 1e-6) {
  return all_close(to_cpu(gpu), to_double(cpu), rtol, atol);
}

}  // namespace

TEST(CudaOps, Elementwise) {
  REQUIRE_GPU();
  Tensor a = random_tensor({37, 19}, 1), b = random_tensor({37, 19}, 2), bias = random_tensor({19}, 3);
  Tensor ga = to_gpu(a), gb = to_gpu(b), gbias = to_gpu(bias);
  Tensor out = Tensor::empty({37, 19}), gout = to_gpu(out);
  ops::add(a, b, out);
  ops::add(ga, gb, gout);
  EXPECT_TRUE(same(gout, out));
  ops::axpy(0.7f, a, b);
  ops::axpy(0.7f, ga, gb);
  EXPECT_TRUE(same(gb, b));
  ops::scale(a, -1.3f);
  ops::scale(ga, -1.3f);
  EXPECT_TRUE(same(ga, a));
  ops::add_bias(a, bias);
  ops::add_bias(ga, gbias);
  EXPECT_TRUE(same(ga, a));
  ops::bias_backward(a, bias);
  ops::bias_backward(ga, gbias);
  EXPECT_TRUE(same(gbias, bias));
  EXPECT_NEAR(ops::sum_squares(ga), ops::sum_squares(a), 1e-9 * ops::sum_squares(a));
  ops::fill(ga, 2.5f);
  EXPECT_EQ(to_cpu(ga).to_vector(), std::vector<float>(37 * 19, 2.5f));
}

TEST(CudaOps, GemmEveryTransposeAndBatched) {
  REQUIRE_GPU();
  const int64_t M = 33, K = 17, N = 29;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = random_tensor(ta ? opd::core::Shape{K, M} : opd::core::Shape{M, K}, 4);
      Tensor b = random_tensor(tb ? opd::core::Shape{N, K} : opd::core::Shape{K, N}, 5);
      Tensor c = random_tensor({M, N}, 6), gc = to_gpu(c);
      ops::gemm(a, ta, b, tb, c, 0.8f, 0.5f);
      ops::gemm(to_gpu(a), ta, to_gpu(b), tb, gc, 0.8f, 0.5f);
      EXPECT_TRUE(same(gc, c)) << "ta " << ta << " tb " << tb;
    }
  Tensor a = random_tensor({3, M, K}, 7), b = random_tensor({3, N, K}, 8), c = Tensor::zeros({3, M, N});
  Tensor gc = to_gpu(c);
  ops::gemm_batched(a, false, b, true, c);
  ops::gemm_batched(to_gpu(a), false, to_gpu(b), true, gc);
  EXPECT_TRUE(same(gc, c));
}

TEST(CudaOps, GemmResidualAddsInTheEpilogue) {
  // cuBLASLt reads the residual as C and writes out as D (another buffer, or the same one).
  REQUIRE_GPU();
  const int64_t M = 48, K = 320, N = 40;
  for (const DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(opd::core::dtype_name(dt));
    auto operand = [&](const Tensor& x) {
      if (dt == DType::F32) return x;
      Tensor h = Tensor::empty(x.shape(), DType::BF16);
      ops::cast(x, h);
      return h;
    };
    const Tensor a = operand(random_tensor({M, K}, 21)), b = operand(random_tensor({N, K}, 22));
    const Tensor r = random_tensor({M, N}, 23);
    Tensor out = Tensor::empty({M, N}), scratch = Tensor::empty({M, N});
    ops::gemm_residual(a, false, b, true, r, out, scratch);
    Tensor gr = to_gpu(r), gout = to_gpu(Tensor::zeros({M, N})), gscratch = to_gpu(Tensor::zeros({M, N}));
    ops::gemm_residual(to_gpu(a), false, to_gpu(b), true, gr, gout, gscratch);
    EXPECT_TRUE(same(gout, out));
    EXPECT_TRUE(same(gr, r, 0, 0)) << "the residual is only read";
    ops::gemm_residual(to_gpu(a), false, to_gpu(b), true, gr, gr, gscratch);  // in place
    EXPECT_TRUE(same(gr, out));
  }
}

TEST(CudaOps, EmbeddingWithAndWithoutAShard) {
  REQUIRE_GPU();
  Tensor table = random_tensor({10, 6}, 9), ids = random_ids({13}, 20, 10);
  for (ops::VocabRange range : {ops::VocabRange{0, 20}, ops::VocabRange{10, 20}}) {
    Tensor out = Tensor::empty({13, 6}), gout = to_gpu(out);
    ops::embedding_forward(table, ids, out, range);
    ops::embedding_forward(to_gpu(table), to_gpu(ids), gout, range);
    EXPECT_TRUE(same(gout, out));
    Tensor d = random_tensor({13, 6}, 11), dt = random_tensor({10, 6}, 12), gdt = to_gpu(dt);
    ops::embedding_backward(d, ids, dt, range);
    ops::embedding_backward(to_gpu(d), to_gpu(ids), gdt, range);
    EXPECT_TRUE(same(gdt, dt));
  }
}

TEST(CudaOps, RmsNormRopeSwiglu) {
  REQUIRE_GPU();
  Tensor x = random_tensor({21, 48}, 13), w = random_tensor({48}, 14, 0.5f, 1.5f);
  Tensor y = Tensor::empty({21, 48}), r = Tensor::empty({21}), gy = to_gpu(y), gr = to_gpu(r);
  ops::rmsnorm_forward(x, w, 1e-5f, y, &r);
  ops::rmsnorm_forward(to_gpu(x), to_gpu(w), 1e-5f, gy, &gr);
  EXPECT_TRUE(same(gy, y));
  EXPECT_TRUE(same(gr, r));
  Tensor dy = random_tensor({21, 48}, 15), dx = Tensor::empty({21, 48}), dw = random_tensor({48}, 16);
  Tensor gdx = to_gpu(dx), gdw = to_gpu(dw);
  ops::rmsnorm_backward(x, w, r, dy, dx, dw);
  ops::rmsnorm_backward(to_gpu(x), to_gpu(w), gr, to_gpu(dy), gdx, gdw);
  EXPECT_TRUE(same(gdx, dx, 1e-5, 1e-5));
  EXPECT_TRUE(same(gdw, dw, 1e-5, 1e-5));

  Tensor q = random_tensor({7, 3, 16}, 17), pos = random_ids({7}, 500, 18), gq = to_gpu(q);
  ops::rope_forward(q, pos, 10000.0f);
  ops::rope_forward(gq, to_gpu(pos), 10000.0f);
  EXPECT_TRUE(same(gq, q, 1e-5, 1e-5));
  ops::rope_backward(q, pos, 10000.0f);
  ops::rope_backward(gq, to_gpu(pos), 10000.0f);
  EXPECT_TRUE(same(gq, q, 1e-5, 1e-5));

  Tensor g = random_tensor({5, 40}, 19, -4.0f, 4.0f), u = random_tensor({5, 40}, 20);
  Tensor o = Tensor::empty({5, 40}), go = to_gpu(o);
  ops::swiglu_forward(g, u, o);
  ops::swiglu_forward(to_gpu(g), to_gpu(u), go);
  EXPECT_TRUE(same(go, o, 1e-5, 1e-6));
  Tensor d = random_tensor({5, 40}, 21), dg = Tensor::empty({5, 40}), du = Tensor::empty({5, 40});
  Tensor gdg = to_gpu(dg), gdu = to_gpu(du);
  ops::swiglu_backward(g, u, d, dg, du);
  ops::swiglu_backward(to_gpu(g), to_gpu(u), to_gpu(d), gdg, gdu);
  EXPECT_TRUE(same(gdg, dg, 1e-5, 1e-6));
  EXPECT_TRUE(same(gdu, du, 1e-5, 1e-6));
}

TEST(CudaOps, AdamW) {
  REQUIRE_GPU();
  Tensor p = random_tensor({300}, 22), g = random_tensor({300}, 23), m = random_tensor({300}, 24);
  Tensor v = random_tensor({300}, 25, 0.0f, 1.0f);
  Tensor gp = to_gpu(p), gm = to_gpu(m), gv = to_gpu(v);
  ops::AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  hp.step = 3;
  hp.grad_scale = 0.5f;
  ops::adamw_step(p, g, m, v, hp);
  ops::adamw_step(gp, to_gpu(g), gm, gv, hp);
  EXPECT_TRUE(same(gp, p));
  EXPECT_TRUE(same(gm, m));
  EXPECT_TRUE(same(gv, v));
}

TEST(CudaOps, AttentionForwardAndBackward) {
  REQUIRE_GPU();
  // Training shape (q_pos = t) with GQA, then a decode step against a longer cache.
  const int64_t B = 2, T = 9, H = 4, G = 2, E = 8;
  Tensor q = random_tensor({B, T, H, E}, 30), k = random_tensor({B, T, G, E}, 31);
  Tensor v = random_tensor({B, T, G, E}, 32);
  std::vector<int32_t> pv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) pv.push_back(static_cast<int32_t>(t));
  Tensor pos = Tensor::from_vector(pv, {B, T});
  Tensor out = Tensor::empty({B, T, H, E}), probs = Tensor::empty({B, H, T, T});
  Tensor gout = to_gpu(out), gprobs = to_gpu(probs);
  ops::attention_forward(q, k, v, pos, 0.35f, out, &probs);
  ops::attention_forward(to_gpu(q), to_gpu(k), to_gpu(v), to_gpu(pos), 0.35f, gout, &gprobs);
  EXPECT_TRUE(same(gout, out));
  EXPECT_TRUE(same(gprobs, probs));
  Tensor d = random_tensor({B, T, H, E}, 33);
  Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()), dv = Tensor::empty(v.shape());
  Tensor gdq = to_gpu(dq), gdk = to_gpu(dk), gdv = to_gpu(dv);
  ops::attention_backward(q, k, v, probs, d, 0.35f, dq, dk, dv);
  ops::attention_backward(to_gpu(q), to_gpu(k), to_gpu(v), gprobs, to_gpu(d), 0.35f, gdq, gdk, gdv);
  EXPECT_TRUE(same(gdq, dq, 1e-5, 1e-5));
  EXPECT_TRUE(same(gdk, dk, 1e-5, 1e-5));
  EXPECT_TRUE(same(gdv, dv, 1e-5, 1e-5));
  // Keeping the row log-sum-exp instead of P: the backward recomputes P.
  Tensor lse = Tensor::empty({B, H, T}), glse = to_gpu(lse), o2 = Tensor::empty(out.shape()), go2 = to_gpu(o2);
  ops::attention_forward(q, k, v, pos, 0.35f, o2, nullptr, &lse);
  ops::attention_forward(to_gpu(q), to_gpu(k), to_gpu(v), to_gpu(pos), 0.35f, go2, nullptr, &glse);
  EXPECT_TRUE(same(glse, lse));
  ops::attention_backward_from_lse(q, k, v, pos, lse, d, 0.35f, dq, dk, dv);
  ops::attention_backward_from_lse(to_gpu(q), to_gpu(k), to_gpu(v), to_gpu(pos), glse, to_gpu(d),
                                   0.35f, gdq, gdk, gdv);
  EXPECT_TRUE(same(gdq, dq, 1e-5, 1e-5));
  EXPECT_TRUE(same(gdk, dk, 1e-5, 1e-5));
  EXPECT_TRUE(same(gdv, dv, 1e-5, 1e-5));

  Tensor q1 = random_tensor({B, 1, H, E}, 34), step = Tensor::from_vector(std::vector<int32_t>{5, 8}, {B, 1});
  Tensor o1 = Tensor::empty({B, 1, H, E}), go1 = to_gpu(o1);
  ops::attention_forward(q1, k, v, step, 0.35f, o1, nullptr);
  ops::attention_forward(to_gpu(q1), to_gpu(k), to_gpu(v), to_gpu(step), 0.35f, go1, nullptr);
  EXPECT_TRUE(same(go1, o1));
}

TEST(CudaOps, VocabRowsScatterAndGather) {
  REQUIRE_GPU();
  Tensor x = random_tensor({6, 1000}, 40, -5.0f, 5.0f), gx = to_gpu(x);
  x.data<float>()[17] = x.data<float>()[3];  // a tie in row 0
  gx = to_gpu(x);
  Tensor ls = Tensor::empty({6, 1000}), gls = to_gpu(ls);
  ops::log_softmax_rows(x, ls);
  ops::log_softmax_rows(gx, gls);
  EXPECT_TRUE(same(gls, ls));
  Tensor lse = Tensor::empty({6}), glse = to_gpu(lse), h = Tensor::empty({6}), gh = to_gpu(h);
  ops::logsumexp_rows(x, lse);
  ops::logsumexp_rows(gx, glse);
  ops::entropy_rows(x, h);
  ops::entropy_rows(gx, gh);
  EXPECT_TRUE(same(glse, lse));
  EXPECT_TRUE(same(gh, h));
  Tensor vals = Tensor::empty({6, 12}), ids = Tensor::empty({6, 12}, DType::I32);
  Tensor gvals = to_gpu(vals), gids = to_gpu(ids);
  ops::topk_rows(x, 12, vals, ids);
  ops::topk_rows(gx, 12, gvals, gids);
  EXPECT_EQ(to_cpu(gids).to_vector_i32(), ids.to_vector_i32());
  EXPECT_TRUE(same(gvals, vals, 0, 0));
  Tensor got = Tensor::empty({6, 12}), ggot = to_gpu(got);
  ops::gather_cols(x, ids, got);
  ops::gather_cols(gx, gids, ggot);
  EXPECT_TRUE(same(ggot, got, 0, 0));

  Tensor src = random_tensor({2, 3, 5}, 41), dst = random_tensor({2, 7, 5}, 42), gdst = to_gpu(dst);
  Tensor pos = Tensor::from_vector(std::vector<int32_t>{0, 4, 6, 1, 2, 5}, {2, 3});
  ops::scatter_rows(src, pos, dst);
  ops::scatter_rows(to_gpu(src), to_gpu(pos), gdst);
  EXPECT_TRUE(same(gdst, dst, 0, 0));
}

TEST(CudaOps, ChunkedLmHeadStatsAndBackward) {
  REQUIRE_GPU();
  const int64_t N = 23, D = 16, V = 300;
  Tensor h = random_tensor({N, D}, 50, -1.5f, 1.5f), w = random_tensor({V, D}, 51, -1.5f, 1.5f);
  std::vector<int32_t> tv = random_ids({N}, V, 52).to_vector_i32();
  tv[3] = -1;
  Tensor targets = Tensor::from_vector(tv, {N});
  for (ops::VocabRange range : {ops::VocabRange{}, ops::VocabRange{150, 600}}) {
    ops::HeadStats s, gs;
    for (ops::HeadStats* x : {&s, &gs}) {
      const Device dev = x == &s ? Device::Host : Device::Cuda;
      x->lse = Tensor::empty({N}, DType::F32, dev);
      x->target_logit = Tensor::empty({N}, DType::F32, dev);
      x->entropy = Tensor::empty({N}, DType::F32, dev);
    }
    Tensor t_all = range.total ? Tensor::from_vector(std::vector<int32_t>(tv.begin(), tv.end()), {N}) : targets;
    if (range.total)  // targets in the whole vocabulary of 600, some in this shard
      for (int64_t i = 0; i < N; i += 2)
        if (tv[i] >= 0) t_all.data<int32_t>()[i] = static_cast<int32_t>(tv[i] + 150);
    ops::lm_head_stats(h, w, &t_all, 0.8f, 64, s, range);
    const Tensor gt = to_gpu(t_all);
    ops::lm_head_stats(to_gpu(h), to_gpu(w), &gt, 0.8f, 64, gs, range);
    EXPECT_TRUE(same(gs.lse, s.lse));
    EXPECT_TRUE(same(gs.target_logit, s.target_logit));
    EXPECT_TRUE(same(gs.entropy, s.entropy, 1e-5, 1e-5));
    Tensor d_loss = random_tensor({N}, 53), dh = Tensor::empty({N, D}), dw = random_tensor({V, D}, 54);
    Tensor gdh = to_gpu(dh), gdw = to_gpu(dw);
    ops::lm_head_cross_entropy_backward(h, w, t_all, s.lse, d_loss, 0.8f, 64, dh, dw, range);
    ops::lm_head_cross_entropy_backward(to_gpu(h), to_gpu(w), to_gpu(t_all), gs.lse, to_gpu(d_loss),
                                        0.8f, 64, gdh, gdw, range);
    EXPECT_TRUE(same(gdh, dh, 1e-5, 1e-5));
    EXPECT_TRUE(same(gdw, dw, 1e-5, 1e-5));
  }
}

namespace {
Tensor to_bf16(const Tensor& x) {
  Tensor h = Tensor::empty(x.shape(), DType::BF16, x.device());
  ops::cast(x, h);
  return h;
}
}  // namespace

TEST(CudaOps, CastIsBitIdenticalToTheHost) {
  REQUIRE_GPU();
  Tensor x = random_tensor({4099}, 60, -1e3f, 1e3f);
  x.data<float>()[0] = 1.0f + std::ldexp(1.0f, -8);  // a tie
  x.data<float>()[1] = std::numeric_limits<float>::infinity();
  const Tensor h = to_bf16(x), gh = to_bf16(to_gpu(x));
  const Tensor back = to_cpu(gh);
  EXPECT_EQ(0, std::memcmp(back.raw(), h.raw(), h.bytes()));
  Tensor w = Tensor::empty(x.shape()), gw = Tensor::empty(x.shape(), DType::F32, Device::Cuda);
  ops::cast(h, w);
  ops::cast(gh, gw);
  EXPECT_TRUE(same(gw, w, 0.0, 0.0));
}

TEST(CudaOps, Bf16GemmAccumulatesInF32) {
  // bf16 operands on tensor cores against the CPU's exact widening: both sum exact f32 products,
  // so they agree to f32 summation order (the 1e-2 bf16 bound is far looser).
  REQUIRE_GPU();
  const int64_t M = 65, K = 130, N = 47;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Tensor a = to_bf16(random_tensor(ta ? opd::core::Shape{K, M} : opd::core::Shape{M, K}, 61));
      const Tensor b = to_bf16(random_tensor(tb ? opd::core::Shape{N, K} : opd::core::Shape{K, N}, 62));
      Tensor c = random_tensor({M, N}, 63), gc = to_gpu(c);
      ops::gemm(a, ta, b, tb, c, 0.7f, 1.0f);
      ops::gemm(to_gpu(a), ta, to_gpu(b), tb, gc, 0.7f, 1.0f);
      EXPECT_TRUE(same(gc, c, 1e-5, 1e-5)) << "ta " << ta << " tb " << tb;
    }
}

TEST(CudaOps, Bf16LmHeadWithinBf16Tolerance) {
  // The GPU head rounds each chunk's dlogits to bf16 for its products, the CPU keeps them f32:
  // the statistics agree to f32 order, the gradients within bf16's 1e-2.
  REQUIRE_GPU();
  const int64_t N = 19, D = 32, V = 517;
  const Tensor h = to_bf16(random_tensor({N, D}, 64)), w = to_bf16(random_tensor({V, D}, 65));
  const Tensor targets = random_ids({N}, V, 66);
  ops::HeadStats s, gs;
  for (ops::HeadStats* x : {&s, &gs}) {
    const Device dev = x == &s ? Device::Host : Device::Cuda;
    x->lse = Tensor::empty({N}, DType::F32, dev);
    x->target_logit = Tensor::empty({N}, DType::F32, dev);
    x->entropy = Tensor::empty({N}, DType::F32, dev);
  }
  const Tensor gt = to_gpu(targets);
  ops::lm_head_stats(h, w, &targets, 1.0f, 100, s, {});
  ops::lm_head_stats(to_gpu(h), to_gpu(w), &gt, 1.0f, 100, gs, {});
  EXPECT_TRUE(same(gs.lse, s.lse, 1e-5, 1e-5));
  EXPECT_TRUE(same(gs.target_logit, s.target_logit, 1e-5, 1e-5));
  EXPECT_TRUE(same(gs.entropy, s.entropy, 1e-5, 1e-5));
  const Tensor d_loss = random_tensor({N}, 67);
  Tensor dh = Tensor::empty({N, D}), dw = Tensor::zeros({V, D});
  Tensor gdh = to_gpu(dh), gdw = to_gpu(dw);
  ops::lm_head_cross_entropy_backward(h, w, targets, s.lse, d_loss, 1.0f, 100, dh, dw, {});
  ops::lm_head_cross_entropy_backward(to_gpu(h), to_gpu(w), gt, gs.lse, to_gpu(d_loss), 1.0f, 100,
                                      gdh, gdw, {});
  EXPECT_TRUE(same(gdh, dh, 1e-2, 1e-3));
  EXPECT_TRUE(same(gdw, dw, 1e-2, 1e-3));
}

// The normed and SwiGLU GEMM operands written directly in bf16 equal the f32 results cast (the
// same rounding), on the GPU as on the CPU.
TEST(CudaOps, Bf16OutputsOfNormAndSwiGluAreTheF32OutputsRounded) {
  REQUIRE_GPU();
  const Tensor x = random_tensor({9, 70}, 80), w = random_tensor({70}, 81, 0.5f, 1.5f);
  const Tensor g = random_tensor({9, 70}, 82, -4.0f, 4.0f), u = random_tensor({9, 70}, 83);
  const Tensor d = random_tensor({9, 70}, 84);
  auto bits = [](const Tensor& gpu_bf16) {
    const Tensor h = to_cpu(gpu_bf16);
    return std::vector<uint16_t>(h.data<uint16_t>(), h.data<uint16_t>() + h.numel());
  };
  auto rounded = [&](const Tensor& gpu_f32) {
    Tensor h = Tensor::empty(gpu_f32.shape(), DType::BF16, Device::Cuda);
    ops::cast(gpu_f32, h);
    return bits(h);
  };
  auto f32 = [](const Tensor& like) { return Tensor::empty(like.shape(), DType::F32, Device::Cuda); };
  auto b16 = [](const Tensor& like) { return Tensor::empty(like.shape(), DType::BF16, Device::Cuda); };
  const Tensor gx = to_gpu(x), gw = to_gpu(w), gg = to_gpu(g), gu = to_gpu(u), gd = to_gpu(d);
  Tensor y = f32(x), y16 = b16(x);
  ops::rmsnorm_forward(gx, gw, 1e-5f, y, nullptr);
  ops::rmsnorm_forward(gx, gw, 1e-5f, y16, nullptr);
  EXPECT_EQ(bits(y16), rounded(y));
  Tensor o = f32(g), o16 = b16(g);
  ops::swiglu_forward(gg, gu, o);
  ops::swiglu_forward(gg, gu, o16);
  EXPECT_EQ(bits(o16), rounded(o));
  Tensor dg = f32(g), du = f32(g), dg16 = b16(g), du16 = b16(g);
  ops::swiglu_backward(gg, gu, gd, dg, du);
  ops::swiglu_backward(gg, gu, gd, dg16, du16);
  EXPECT_EQ(bits(dg16), rounded(dg));
  EXPECT_EQ(bits(du16), rounded(du));
}
