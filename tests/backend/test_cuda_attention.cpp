// The flash attention of backend/cuda against the CPU backend, on random inputs over training,
// continuation (S > T), ragged (rows that see nothing, positions past S) and decode shapes with
// H / G = 1, 2, 4 and E from 16 to 256: forward out and lse, and dq, dk, dv of the backward
// from the lse.
//
// Two checks here: (1) on any machine, a plain C++ emulation of the kernels' tile loops, driven by
// the kernels' own bookkeeping (backend/cuda/attention_tiles.hpp: row numbering, key-tile ranges,
// causal skips, key splits and their combination, online softmax), against the CPU backend;
// (2) on a GPU, the kernels themselves (skipped without a device). The kernels' own code also
// runs on CPU threads in test_cuda_attention_emulated.cpp.
//
// Tolerances: 1e-5 relative for out and lse. The gradients are held to 1e-5 relative with an
// absolute floor of 1e-5 (as tests/backend/test_cuda_ops.cpp): dS = P (dP - D) subtracts two
// sums of up to S terms computed in different ways (the CPU takes D = sum_j P dP in double, the
// kernels D = dO . O in fp32), so gradient entries that cancel to near 0 carry an absolute error
// of a few fp32 ulps of |dP|, not of the result.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/attention_cases.hpp"
#include "backend/cuda/attention_tiles.hpp"
#include "backend/ops.hpp"
#include "testing/gpu.hpp"
#include "testing/reference.hpp"

namespace ops = opd::backend;
namespace attn = opd::backend::cuda::attn;
using opd::core::Device;
using opd::core::Shape;
using opd::core::Tensor;
using opd::testing::all_close;
using opd::testing::to_cpu;
using opd::testing::to_gpu;
using opd::testing::random_tensor;
using opd::testing::to_double;

using namespace opd::testing::attention_cases;

namespace {

// ---- the CPU emulation of the kernels' tile loops ------------------------------------------

struct Host {
  attn::Shape s;
  std::vector<float> q, k, v, d_out;
  std::vector<int32_t> pos;
  float scale;
  const float* qrow(int b, int t, int h) const { return q.data() + attn::q_offset(s, b, t, h); }
  const float* krow(int b, int j, int g) const { return k.data() + attn::kv_offset(s, b, j, g); }
  const float* vrow(int b, int j, int g) const { return v.data() + attn::kv_offset(s, b, j, g); }
  const float* dorow(int b, int t, int h) const {
    return d_out.data() + attn::q_offset(s, b, t, h);
  }
  int vis(int b, int t) const { return attn::visible_keys(pos[std::size_t(b) * s.T + t], s.S); }
};

Host host(const Case& c, const Inputs& in) {
  return {c.shape(),        in.q.to_vector(),     in.k.to_vector(),
          in.v.to_vector(), in.d_out.to_vector(), in.pos.to_vector_i32(),
          in.scale};
}

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s = std::fma(a[i], b[i], s);
  return s;
}

// Visible-key counts of a row tile and the tile's key end (its largest count).
int tile_vis(const Host& h, int b, int g, int n0, int rows, std::vector<int>& vis) {
  vis.assign(rows, 0);
  int end = 0;
  for (int i = 0; i < rows; ++i) {
    vis[i] = h.vis(b, attn::row_of(h.s, g, n0 + i).t);
    end = std::max(end, vis[i]);
  }
  return end;
}

// The forward kernel with br x bc tiles and `splits` key splits, then the combine kernel.
void emulate_forward(const Host& h, int br, int bc, int splits, std::vector<float>& out,
                     std::vector<float>& lse) {
  const attn::Shape& s = h.s;
  const int64_t out_n = int64_t(s.B) * s.T * s.H * s.E, lse_n = int64_t(s.B) * s.H * s.T;
  const int max_tiles = attn::ceil_div(s.S, bc);
  std::vector<float> part_out(splits * out_n, std::nanf("")),
      part_lse(splits * lse_n, std::nanf(""));
  std::vector<int> vis;
  std::vector<float> acc(s.E), sc(bc);
  for (int b = 0; b < s.B; ++b)
    for (int g = 0; g < s.G; ++g)
      for (int n0 = 0; n0 < s.rows(); n0 += br) {
        const int rows = std::min(br, s.rows() - n0);
        const int kv_end = tile_vis(h, b, g, n0, rows, vis);
        for (int split = 0; split < splits; ++split) {
          const attn::TileRange range = attn::split_tiles(kv_end, bc, max_tiles, splits, split);
          for (int i = 0; i < rows; ++i) {
            const attn::Row r = attn::row_of(s, g, n0 + i);
            attn::OnlineSoftmax sm;
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int kt = range.begin; kt < range.end; ++kt) {
              const int j0 = kt * bc;
              float mx = -INFINITY;
              for (int jj = 0; jj < bc; ++jj) {
                const int j = j0 + jj;
                sc[jj] = j < vis[i] ? dot(h.qrow(b, r.t, r.h), h.krow(b, j, g), s.E) * h.scale
                                    : -INFINITY;
                mx = std::max(mx, sc[jj]);
              }
              const float alpha = sm.rescale(mx);
              for (float& a : acc) a *= alpha;
              for (int jj = 0; jj < bc; ++jj) {
                const float p = sm.prob(sc[jj]);
                sm.l += p;
                if (j0 + jj < s.S)
                  for (int e = 0; e < s.E; ++e) acc[e] += p * h.vrow(b, j0 + jj, g)[e];
                else
                  EXPECT_EQ(p, 0.0f) << "a key past S got probability";
              }
            }
            const float inv = sm.l > 0.0f ? 1.0f / sm.l : 0.0f;
            float* o = part_out.data() + split * out_n + attn::q_offset(s, b, r.t, r.h);
            for (int e = 0; e < s.E; ++e) o[e] = acc[e] * inv;
            part_lse[split * lse_n + attn::lse_offset(s, b, r.h, r.t)] = sm.lse(sm.l);
          }
        }
      }
  out.assign(out_n, 0.0f);
  lse.assign(lse_n, 0.0f);
  for (int64_t idx = 0; idx < out_n; ++idx) {  // combine_splits, element by element
    const int64_t row = idx / s.E;
    const int hh = int(row % s.H), t = int((row / s.H) % s.T), b = int(row / (int64_t(s.H) * s.T));
    const int64_t li = attn::lse_offset(s, b, hh, t);
    float mx = -INFINITY, sum = 0.0f, o = 0.0f;
    for (int k = 0; k < splits; ++k) mx = attn::merge_lse_max(mx, part_lse[k * lse_n + li]);
    for (int k = 0; k < splits; ++k) sum += attn::split_weight(part_lse[k * lse_n + li], mx);
    const float total = attn::combined_lse(mx, sum);
    for (int k = 0; k < splits; ++k)
      o += attn::split_weight(part_lse[k * lse_n + li], total) * part_out[k * out_n + idx];
    out[idx] = o;
    lse[li] = total;
  }
}

// The backward kernels: the delta pass (forward tiles), dK/dV per key tile (with the skip of
// query tiles that see none of its keys), dQ per query tile over its visible key tiles.
template <int kE>
void emulate_backward(const Host& h, const std::vector<float>& lse, std::vector<float>& dq,
                      std::vector<float>& dk, std::vector<float>& dv, int64_t& skipped) {
  using C = attn::Config<kE>;
  const attn::Shape& s = h.s;
  std::vector<int> vis;
  auto p_of = [&](int b, int g, int n, int j, int v) {
    const attn::Row r = attn::row_of(s, g, n);
    return j < v ? attn::prob_from_lse(dot(h.qrow(b, r.t, r.h), h.krow(b, j, g), s.E) * h.scale,
                                       lse[attn::lse_offset(s, b, r.h, r.t)])
                 : 0.0f;
  };
  // D = dO . (P V), tile by tile as the delta form of the forward kernel.
  std::vector<float> delta(std::size_t(s.B) * s.H * s.T, std::nanf("")), o(s.E);
  for (int b = 0; b < s.B; ++b)
    for (int g = 0; g < s.G; ++g)
      for (int n0 = 0; n0 < s.rows(); n0 += C::kFwdBr) {
        const int rows = std::min(C::kFwdBr, s.rows() - n0);
        const int tiles = attn::ceil_div(tile_vis(h, b, g, n0, rows, vis), C::kFwdBc);
        for (int i = 0; i < rows; ++i) {
          std::fill(o.begin(), o.end(), 0.0f);
          for (int j = 0; j < tiles * C::kFwdBc && j < s.S; ++j) {
            const float p = p_of(b, g, n0 + i, j, vis[i]);
            for (int e = 0; e < s.E; ++e) o[e] += p * h.vrow(b, j, g)[e];
          }
          const attn::Row r = attn::row_of(s, g, n0 + i);
          delta[attn::lse_offset(s, b, r.h, r.t)] = dot(o.data(), h.dorow(b, r.t, r.h), s.E);
        }
      }
  auto ds_of = [&](int b, int g, int n, int j, int v, float p) {
    const attn::Row r = attn::row_of(s, g, n);
    const float dp = dot(h.dorow(b, r.t, r.h), h.vrow(b, j, g), s.E);
    return p * (dp - delta[attn::lse_offset(s, b, r.h, r.t)]);
  };
  // dK, dV: a key tile at a time, every value written once.
  dk.assign(h.k.size(), std::nanf(""));
  dv.assign(h.k.size(), std::nanf(""));
  skipped = 0;
  for (int b = 0; b < s.B; ++b)
    for (int g = 0; g < s.G; ++g)
      for (int j0 = 0; j0 < s.S; j0 += C::kBwdBc) {
        const int keys = std::min(C::kBwdBc, s.S - j0);
        std::vector<std::vector<float>> tk(keys, std::vector<float>(s.E, 0.0f)), tv = tk;
        for (int n0 = 0; n0 < s.rows(); n0 += C::kBwdBr) {
          const int rows = std::min(C::kBwdBr, s.rows() - n0);
          tile_vis(h, b, g, n0, rows, vis);
          if (std::none_of(vis.begin(), vis.end(), [&](int x) { return x > j0; })) {
            ++skipped;
            continue;
          }
          for (int i = 0; i < rows; ++i) {
            const attn::Row r = attn::row_of(s, g, n0 + i);
            for (int jj = 0; jj < keys; ++jj) {
              const float p = p_of(b, g, n0 + i, j0 + jj, vis[i]);
              const float ds = ds_of(b, g, n0 + i, j0 + jj, vis[i], p);
              for (int e = 0; e < s.E; ++e) {
                tv[jj][e] += p * h.dorow(b, r.t, r.h)[e];
                tk[jj][e] += ds * h.qrow(b, r.t, r.h)[e];
              }
            }
          }
        }
        for (int jj = 0; jj < keys; ++jj)
          for (int e = 0; e < s.E; ++e) {
            dk[attn::kv_offset(s, b, j0 + jj, g) + e] = tk[jj][e] * h.scale;
            dv[attn::kv_offset(s, b, j0 + jj, g) + e] = tv[jj][e];
          }
      }
  // dQ: a query tile at a time over the key tiles up to its largest visible count.
  dq.assign(h.q.size(), std::nanf(""));
  std::vector<float> aq(s.E);
  for (int b = 0; b < s.B; ++b)
    for (int g = 0; g < s.G; ++g)
      for (int n0 = 0; n0 < s.rows(); n0 += C::kDqBr) {
        const int rows = std::min(C::kDqBr, s.rows() - n0);
        const int tiles = attn::ceil_div(tile_vis(h, b, g, n0, rows, vis), C::kDqBc);
        for (int i = 0; i < rows; ++i) {
          std::fill(aq.begin(), aq.end(), 0.0f);
          for (int j = 0; j < tiles * C::kDqBc && j < s.S; ++j) {
            const float p = p_of(b, g, n0 + i, j, vis[i]);
            const float ds = ds_of(b, g, n0 + i, j, vis[i], p);
            for (int e = 0; e < s.E; ++e) aq[e] += ds * h.krow(b, j, g)[e];
          }
          const attn::Row r = attn::row_of(s, g, n0 + i);
          for (int e = 0; e < s.E; ++e) dq[attn::q_offset(s, b, r.t, r.h) + e] = aq[e] * h.scale;
        }
      }
}

void emulate_backward(const Host& h, const std::vector<float>& lse, std::vector<float>& dq,
                      std::vector<float>& dk, std::vector<float>& dv, int64_t& skipped) {
  switch (attn::head_dim_bound(h.s.E)) {
    case 32:
      return emulate_backward<32>(h, lse, dq, dk, dv, skipped);
    case 64:
      return emulate_backward<64>(h, lse, dq, dk, dv, skipped);
    case 128:
      return emulate_backward<128>(h, lse, dq, dk, dv, skipped);
    default:
      return emulate_backward<256>(h, lse, dq, dk, dv, skipped);
  }
}

// The forward tiles the kernels use for this shape.
void forward_tiles(const attn::Shape& s, int& br, int& bc) {
  auto pick = [&](auto cfg) {
    using C = decltype(cfg);
    br = s.rows() <= attn::kDecodeBr ? attn::kDecodeBr : C::kFwdBr;
    bc = C::kFwdBc;
  };
  switch (attn::head_dim_bound(s.E)) {
    case 32:
      pick(attn::Config<32>{});
      break;
    case 64:
      pick(attn::Config<64>{});
      break;
    case 128:
      pick(attn::Config<128>{});
      break;
    default:
      pick(attn::Config<256>{});
      break;
  }
}

constexpr int kH200Sms = 132;

}  // namespace

// Split ranges cover each row tile's visible key tiles exactly once, in order; the plan never
// leaves a split empty for the tile that sees every key.
TEST(CudaAttentionTiles, SplitsPartitionTheVisibleKeyTiles) {
  for (int max_tiles : {0, 1, 2, 5, 16, 63, 64, 200})
    for (int64_t blocks : {1, 2, 7, 64, 131, 132, 1000}) {
      const int splits = attn::plan_splits(blocks, max_tiles, kH200Sms);
      ASSERT_GE(splits, 1);
      ASSERT_LE(splits, std::max(max_tiles, 1));
      if (blocks >= kH200Sms) EXPECT_EQ(splits, 1);
      for (int kv_end : {0, 1, 63, 64, 65, 64 * max_tiles}) {
        if (kv_end > 64 * max_tiles) continue;
        int next = 0;
        for (int k = 0; k < splits; ++k) {
          const attn::TileRange r = attn::split_tiles(kv_end, 64, max_tiles, splits, k);
          ASSERT_LE(r.begin, r.end);
          if (r.end > r.begin) {
            EXPECT_EQ(r.begin, next);
            next = r.end;
          }
          if (max_tiles > 0 && kv_end == 64 * max_tiles)
            EXPECT_GT(r.end, r.begin) << "empty split " << k;
        }
        EXPECT_EQ(next, attn::ceil_div(kv_end, 64));
      }
    }
  EXPECT_EQ(attn::visible_keys(-5, 10), 0);
  EXPECT_EQ(attn::visible_keys(0, 10), 1);
  EXPECT_EQ(attn::visible_keys(9, 10), 10);
  EXPECT_EQ(attn::visible_keys(2147483647, 10), 10);
}

// The emulated kernels (forward at the kernels' tiles and split plan, with forced splits, and
// with other tiles; backward at the kernels' tiles) against the CPU backend.
TEST(CudaAttentionTiles, EmulatedKernelsMatchTheCpuBackend) {
  uint64_t seed = 100;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name());
    const Inputs in = inputs(c, seed += 10);
    Tensor out, lse;
    Grads g;
    cpu_reference(c, in, out, lse, g);
    const Host h = host(c, in);
    int br = 0, bc = 0;
    forward_tiles(h.s, br, bc);
    const int max_tiles = attn::ceil_div(c.S, bc);
    const int planned =
        attn::plan_splits(int64_t(attn::ceil_div(h.s.rows(), br)) * c.B * c.G, max_tiles, kH200Sms);
    struct Run {
      int br, bc, splits;
    };
    for (const Run& run :
         {Run{br, bc, planned}, Run{br, bc, 1}, Run{br, bc, std::min(3, max_tiles)},
          Run{16, 32, attn::ceil_div(c.S, 32)}, Run{32, 16, 2}}) {
      if (run.splits < 1) continue;
      SCOPED_TRACE("tiles " + std::to_string(run.br) + " x " + std::to_string(run.bc) + ", " +
                   std::to_string(run.splits) + " splits");
      std::vector<float> eo, el;
      emulate_forward(h, run.br, run.bc, run.splits, eo, el);
      EXPECT_TRUE(all_close(as_double(eo), to_double(out), 1e-5, 1e-6));
      EXPECT_TRUE(same_lse(el, lse));
    }
    std::vector<float> dq, dk, dv;
    int64_t skipped = 0;
    emulate_backward(h, lse.to_vector(), dq, dk, dv, skipped);
    EXPECT_TRUE(all_close(as_double(dq), to_double(g.dq), 1e-5, 1e-5));
    EXPECT_TRUE(all_close(as_double(dk), to_double(g.dk), 1e-5, 1e-5));
    EXPECT_TRUE(all_close(as_double(dv), to_double(g.dv), 1e-5, 1e-5));
    if (c.pos == Pos::Train && c.T > 64) EXPECT_GT(skipped, 0) << "causal tiles were not skipped";
  }
}

// The kernels against the CPU backend; the outputs start as NaN, so every element must be
// written (dq, dk, dv are overwrite outputs, 0 for keys no query sees).
TEST(CudaAttention, FlashKernelsMatchTheCpuBackend) {
  REQUIRE_GPU();
  uint64_t seed = 100;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name());
    const Inputs in = inputs(c, seed += 10);
    Tensor out, lse;
    Grads g;
    cpu_reference(c, in, out, lse, g);
    const Tensor nan_q =
        Tensor::from_vector(std::vector<float>(in.q.numel(), std::nanf("")), in.q.shape());
    const Tensor nan_k =
        Tensor::from_vector(std::vector<float>(in.k.numel(), std::nanf("")), in.k.shape());
    const Tensor nan_l =
        Tensor::from_vector(std::vector<float>(lse.numel(), std::nanf("")), lse.shape());
    Tensor gq = to_gpu(in.q), gk = to_gpu(in.k), gv = to_gpu(in.v), gd = to_gpu(in.d_out);
    Tensor gpos = to_gpu(in.pos);
    Tensor gout = to_gpu(nan_q), glse = to_gpu(nan_l);
    ops::attention_forward(gq, gk, gv, gpos, in.scale, gout, nullptr, &glse);
    EXPECT_TRUE(all_close(to_cpu(gout), to_double(out), 1e-5, 1e-6));
    EXPECT_TRUE(same_lse(to_cpu(glse).to_vector(), lse));
    Tensor gout2 = to_gpu(nan_q);  // without lse
    ops::attention_forward(gq, gk, gv, gpos, in.scale, gout2, nullptr, nullptr);
    EXPECT_EQ(to_cpu(gout2).to_vector(), to_cpu(gout).to_vector());

    Tensor gdq = to_gpu(nan_q), gdk = to_gpu(nan_k), gdv = to_gpu(nan_k);
    ops::attention_backward_from_lse(gq, gk, gv, gpos, to_gpu(lse), gd, in.scale, gdq, gdk, gdv);
    EXPECT_TRUE(all_close(to_cpu(gdq), to_double(g.dq), 1e-5, 1e-5));
    EXPECT_TRUE(all_close(to_cpu(gdk), to_double(g.dk), 1e-5, 1e-5));
    EXPECT_TRUE(all_close(to_cpu(gdv), to_double(g.dv), 1e-5, 1e-5));
    // Deterministic: no atomics, so a second run is bit-identical.
    Tensor gdq2 = to_gpu(nan_q), gdk2 = to_gpu(nan_k), gdv2 = to_gpu(nan_k);
    ops::attention_backward_from_lse(gq, gk, gv, gpos, to_gpu(lse), gd, in.scale, gdq2, gdk2, gdv2);
    EXPECT_EQ(to_cpu(gdq2).to_vector(), to_cpu(gdq).to_vector());
    EXPECT_EQ(to_cpu(gdk2).to_vector(), to_cpu(gdk).to_vector());
    EXPECT_EQ(to_cpu(gdv2).to_vector(), to_cpu(gdv).to_vector());
  }
}

// With bf16 operands: the tensor-core kernels (head dimensions up to 128 on sm_80 and later; the
// f32 kernels otherwise and for decode-sized forwards) against the CPU backend with bf16
// operands, within bf16 tolerance; still deterministic.
TEST(CudaAttention, Bf16OperandsMatchTheCpuBackend) {
  REQUIRE_GPU();
  const auto bf16 = opd::core::DType::BF16;
  uint64_t seed = 700;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name());
    const Inputs in = inputs(c, seed += 10);
    Tensor out, lse;
    Grads g;
    cpu_reference(c, in, out, lse, g, bf16);
    Tensor gq = to_gpu(in.q), gk = to_gpu(in.k), gv = to_gpu(in.v), gd = to_gpu(in.d_out);
    Tensor gpos = to_gpu(in.pos);
    Tensor gout = to_gpu(out), glse = to_gpu(lse);
    ops::fill(gout, std::nanf(""));
    ops::attention_forward(gq, gk, gv, gpos, in.scale, gout, nullptr, &glse, bf16);
    EXPECT_TRUE(bf16_close(to_double(to_cpu(gout)), to_double(out)));
    EXPECT_TRUE(same_lse(to_cpu(glse).to_vector(), lse, 1e-3, 1e-3));
    auto grads = [&] {
      Grads r{to_gpu(g.dq), to_gpu(g.dk), to_gpu(g.dv)};
      ops::fill(r.dq, std::nanf(""));
      ops::fill(r.dk, std::nanf(""));
      ops::fill(r.dv, std::nanf(""));
      ops::attention_backward_from_lse(gq, gk, gv, gpos, to_gpu(lse), gd, in.scale, r.dq, r.dk,
                                       r.dv, bf16);
      return r;
    };
    const Grads gg = grads();
    EXPECT_TRUE(bf16_close(to_double(to_cpu(gg.dq)), to_double(g.dq)));
    EXPECT_TRUE(bf16_close(to_double(to_cpu(gg.dk)), to_double(g.dk)));
    EXPECT_TRUE(bf16_close(to_double(to_cpu(gg.dv)), to_double(g.dv)));
    const Grads again = grads();
    EXPECT_EQ(to_cpu(again.dq).to_vector(), to_cpu(gg.dq).to_vector());
    EXPECT_EQ(to_cpu(again.dk).to_vector(), to_cpu(gg.dk).to_vector());
  }
}

// The probs path (simple kernels) still agrees with the CPU backend, and the probs forward's out
// with the flash forward's.
TEST(CudaAttention, ProbsPathMatchesTheCpuBackend) {
  REQUIRE_GPU();
  const Case c{2, 37, 45, 4, 2, 64, Pos::Continue};
  const Inputs in = inputs(c, 7);
  Tensor out = Tensor::empty({c.B, c.T, c.H, c.E}), probs = Tensor::empty({c.B, c.H, c.T, c.S});
  ops::attention_forward(in.q, in.k, in.v, in.pos, in.scale, out, &probs);
  Tensor gq = to_gpu(in.q), gk = to_gpu(in.k), gv = to_gpu(in.v), gpos = to_gpu(in.pos);
  Tensor gout = to_gpu(out), gprobs = to_gpu(probs), gflash = to_gpu(out);
  ops::attention_forward(gq, gk, gv, gpos, in.scale, gout, &gprobs);
  EXPECT_TRUE(all_close(to_cpu(gout), to_double(out), 1e-5, 1e-6));
  EXPECT_TRUE(all_close(to_cpu(gprobs), to_double(probs), 1e-5, 1e-6));
  ops::attention_forward(gq, gk, gv, gpos, in.scale, gflash, nullptr);
  EXPECT_TRUE(all_close(to_cpu(gflash), to_double(out), 1e-5, 1e-6));
  Grads g{Tensor::empty(in.q.shape()), Tensor::empty(in.k.shape()), Tensor::empty(in.k.shape())};
  ops::attention_backward(in.q, in.k, in.v, probs, in.d_out, in.scale, g.dq, g.dk, g.dv);
  Tensor gdq = to_gpu(g.dq), gdk = to_gpu(g.dk), gdv = to_gpu(g.dv);
  ops::attention_backward(gq, gk, gv, gprobs, to_gpu(in.d_out), in.scale, gdq, gdk, gdv);
  EXPECT_TRUE(all_close(to_cpu(gdq), to_double(g.dq), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(to_cpu(gdk), to_double(g.dk), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(to_cpu(gdv), to_double(g.dv), 1e-5, 1e-5));
}

// Not a check: times the flash kernels at a training shape and a decode step and prints their
// throughput (causal FLOPs: 4 B H E per visible query-key pair forward, 2.5x that backward with
// the recomputation), for the GPU check's log.
TEST(CudaAttention, ReportsThroughput) {
  REQUIRE_GPU();
#ifdef OPD_WITH_CUDA
  struct Shape {
    int B, T, S, H, G, E;
  };
  for (const Shape& sh : {Shape{4, 1024, 1024, 16, 4, 128}, Shape{2, 2048, 2048, 8, 8, 64},
                          Shape{1, 1, 8192, 16, 4, 128}, Shape{32, 1, 2048, 16, 4, 128}}) {
    const Case c{sh.B, sh.T, sh.S, sh.H, sh.G, sh.E, sh.T == 1 ? Pos::Decode : Pos::Train};
    const Inputs in = inputs(c, 3);
    Tensor gq = to_gpu(in.q), gk = to_gpu(in.k), gv = to_gpu(in.v), gd = to_gpu(in.d_out);
    Tensor gpos = to_gpu(in.pos);
    Tensor gout = Tensor::empty(in.q.shape(), opd::core::DType::F32, Device::Cuda);
    Tensor glse = Tensor::empty({c.B, c.H, c.T}, opd::core::DType::F32, Device::Cuda);
    Tensor gdq = Tensor::empty(in.q.shape(), opd::core::DType::F32, Device::Cuda);
    Tensor gdk = Tensor::empty(in.k.shape(), opd::core::DType::F32, Device::Cuda);
    Tensor gdv = Tensor::empty(in.k.shape(), opd::core::DType::F32, Device::Cuda);
    double pairs = 0.0;  // visible (query, key) pairs per head
    for (int32_t p : in.pos.to_vector_i32()) pairs += attn::visible_keys(p, c.S);
    const double fwd_flop = 4.0 * c.H * c.E * pairs;
    auto time = [&](auto&& f) {
      f();
      ops::synchronize(Device::Cuda);
      const int reps = 5;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) f();
      ops::synchronize(Device::Cuda);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    };
    for (const auto operands : {opd::core::DType::F32, opd::core::DType::BF16}) {
      const double tf = time([&] {
        ops::attention_forward(gq, gk, gv, gpos, in.scale, gout, nullptr, &glse, operands);
      });
      const double tb = time([&] {
        ops::attention_backward_from_lse(gq, gk, gv, gpos, glse, gd, in.scale, gdq, gdk, gdv,
                                         operands);
      });
      std::printf(
          "attention %s %s: forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n",
          c.name().c_str(), opd::core::dtype_name(operands), tf * 1e3, fwd_flop / tf * 1e-12,
          tb * 1e3, 2.5 * fwd_flop / tb * 1e-12);
    }
  }
#endif
}
