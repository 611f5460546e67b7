// The flash attention kernels themselves (backend/cuda/attention_forward_kernel.cuh,
// attention_backward_kernels.cuh), compiled as C++ and run on the CPU by the SIMT emulator
// (simt_emulator.hpp: a block's 256 threads as real threads, barriers, shuffles, atomics,
// NaN-filled shared memory with a guard), launched as attention_forward.cu and
// attention_backward.cu launch them, against the CPU backend. This runs the kernels' thread
// mapping, shared-memory layout, reductions and synchronisation on any machine;
// test_cuda_attention.cpp runs them on a GPU. Outputs start as NaN with a guard after them: every
// element must be written, none past the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/attention_cases.hpp"
#include "testing/reference.hpp"

// The emulator before the kernel headers and after everything else: it defines CUDA's keywords
// and builtins as macros for the kernels.
// clang-format off
#include "backend/simt_emulator.hpp"
#include "backend/cuda/attention_backward_kernels.cuh"
#include "backend/cuda/attention_forward_kernel.cuh"
// clang-format on

using namespace opd::testing::attention_cases;
using opd::testing::all_close;
using opd::testing::to_double;

namespace {

constexpr float kSentinel = -777.25f;
constexpr int kGuardFloats = 37;

// A device-like buffer: n values (NaN, or the given ones) and a guard that must stay intact.
struct Buffer {
  std::vector<float> v;
  std::size_t n = 0;
  explicit Buffer(std::size_t count) : v(count + kGuardFloats, kSentinel), n(count) {
    std::fill(v.begin(), v.begin() + n, std::nanf(""));
  }
  explicit Buffer(const std::vector<float>& x) : Buffer(x.size()) {
    std::copy(x.begin(), x.end(), v.begin());
  }
  float* data() { return v.data(); }
  std::vector<float> values() const { return {v.begin(), v.begin() + n}; }
  bool guard_intact() const {
    return std::all_of(v.begin() + n, v.end(), [](float x) { return x == kSentinel; });
  }
};

struct Device {
  Buffer q, k, v, d_out;
  std::vector<int32_t> pos;
  attn::Shape s;
  float scale;
};

dim3 grid3(int x, int y, int z = 1) {
  return dim3{static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z)};
}

// attention_forward.cu's forward_tiles: split plan for `sms` multiprocessors, the kernel, and
// the combine kernel when the keys were split. Returns the number of splits.
template <int kE, int kBr, int kBc>
int forward(Device& d, int sms, Buffer& out, Buffer& lse) {
  const attn::Shape& s = d.s;
  attn::FwdArgs a{};
  a.q = d.q.data();
  a.k = d.k.data();
  a.v = d.v.data();
  a.q_pos = d.pos.data();
  a.scale = d.scale;
  a.s = s;
  const int row_tiles = attn::ceil_div(s.rows(), kBr);
  a.max_tiles = attn::ceil_div(s.S, kBc);
  a.splits = attn::plan_splits(int64_t(row_tiles) * s.B * s.G, a.max_tiles, sms);
  const int64_t out_n = int64_t(s.B) * s.T * s.H * s.E, lse_n = int64_t(s.B) * s.H * s.T;
  Buffer ws(a.splits == 1 ? 0 : a.splits * (out_n + lse_n));
  if (a.splits == 1) {
    a.out = out.data();
    a.lse = lse.data();
  } else {
    a.out = ws.data();
    a.lse = ws.data() + a.splits * out_n;
    a.out_split_stride = out_n;
    a.lse_split_stride = lse_n;
  }
  simt::launch(grid3(row_tiles, s.B * s.G, a.splits), attn::kThreads,
               attn::FwdSmem<kE, kBr, kBc>::kBytes,
               [&] { attn::flash_forward<kE, kBr, kBc, false>(a); });
  if (a.splits > 1) {
    const int blocks = static_cast<int>(std::min<int64_t>((out_n + 255) / 256, 7));  // strides too
    simt::launch(grid3(blocks, 1), 256, 0, [&] {
      attn::combine_splits(a.out, a.lse, a.splits, out_n, lse_n, s, out.data(), lse.data());
    });
    EXPECT_TRUE(ws.guard_intact());
  }
  return a.splits;
}

// attention_backward.cu: the delta pass, then the dK/dV and dQ kernels.
template <int kE>
void backward(Device& d, Buffer& lse, Buffer& dq, Buffer& dk, Buffer& dv) {
  using C = attn::Config<kE>;
  const attn::Shape& s = d.s;
  Buffer delta(std::size_t(s.B) * s.H * s.T);
  attn::FwdArgs f{};
  f.q = d.q.data();
  f.k = d.k.data();
  f.v = d.v.data();
  f.q_pos = d.pos.data();
  f.lse_in = lse.data();
  f.d_out = d.d_out.data();
  f.scale = d.scale;
  f.delta = delta.data();
  f.s = s;
  f.max_tiles = attn::ceil_div(s.S, C::kFwdBc);
  f.splits = 1;
  simt::launch(grid3(attn::ceil_div(s.rows(), C::kFwdBr), s.B * s.G), attn::kThreads,
               attn::FwdSmem<kE, C::kFwdBr, C::kFwdBc>::kBytes,
               [&] { attn::flash_forward<kE, C::kFwdBr, C::kFwdBc, true>(f); });
  EXPECT_TRUE(delta.guard_intact());
  for (float x : delta.values()) ASSERT_FALSE(std::isnan(x)) << "a row's D was not written";
  const attn::BwdArgs a{d.q.data(),   d.k.data(), d.v.data(),   d.d_out.data(),
                        d.pos.data(), lse.data(), delta.data(), d.scale,
                        dq.data(),    dk.data(),  dv.data(),    s};
  simt::launch(grid3(attn::ceil_div(s.S, C::kBwdBc), s.B * s.G), attn::kThreads,
               attn::DkdvSmem<kE, C::kBwdBr, C::kBwdBc>::kBytes,
               [&] { attn::flash_dkdv<kE, C::kBwdBr, C::kBwdBc>(a); });
  simt::launch(grid3(attn::ceil_div(s.rows(), C::kDqBr), s.B * s.G), attn::kThreads,
               attn::DqSmem<kE, C::kDqBr, C::kDqBc>::kBytes,
               [&] { attn::flash_dq<kE, C::kDqBr, C::kDqBc>(a); });
}

template <int kE>
void check_case(const Case& c, uint64_t seed) {
  using C = attn::Config<kE>;
  const Inputs in = inputs(c, seed);
  Tensor out, lse;
  Grads g;
  cpu_reference(c, in, out, lse, g);
  Device d{Buffer(in.q.to_vector()),
           Buffer(in.k.to_vector()),
           Buffer(in.v.to_vector()),
           Buffer(in.d_out.to_vector()),
           in.pos.to_vector_i32(),
           c.shape(),
           in.scale};
  const std::size_t out_n = in.q.numel(), lse_n = lse.numel();
  // On an H200 (132 multiprocessors: keys split when the launch is small) and on a device the
  // launch always fills (no split).
  int splits_seen = 0;
  for (int sms : {132, 1}) {
    SCOPED_TRACE("multiprocessors " + std::to_string(sms));
    Buffer o(out_n), l(lse_n);
    const int splits = d.s.rows() <= attn::kDecodeBr
                           ? forward<kE, attn::kDecodeBr, C::kFwdBc>(d, sms, o, l)
                           : forward<kE, C::kFwdBr, C::kFwdBc>(d, sms, o, l);
    splits_seen = std::max(splits_seen, splits);
    EXPECT_TRUE(o.guard_intact() && l.guard_intact());
    EXPECT_TRUE(all_close(as_double(o.values()), to_double(out), 1e-5, 1e-6));
    EXPECT_TRUE(same_lse(l.values(), lse));
  }
  Buffer l(lse.to_vector()), dq(out_n), dk(in.k.numel()), dv(in.k.numel());
  backward<kE>(d, l, dq, dk, dv);
  EXPECT_TRUE(dq.guard_intact() && dk.guard_intact() && dv.guard_intact());
  EXPECT_TRUE(all_close(as_double(dq.values()), to_double(g.dq), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(as_double(dk.values()), to_double(g.dk), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(as_double(dv.values()), to_double(g.dv), 1e-5, 1e-5));
  if (c.pos == Pos::Decode) EXPECT_GT(splits_seen, 1) << "a decode step should split its keys";
}

}  // namespace

// Small shapes (every thread of every block is a CPU thread): each head-dimension bound, the
// decode row tile, split keys, GQA groups of 1, 2 and 4, rows past the last tile, ragged rows.
TEST(CudaAttentionEmulated, KernelsMatchTheCpuBackend) {
  const std::vector<Case> small = {
      {2, 1, 129, 4, 2, 64, Pos::Decode},    {2, 7, 20, 4, 2, 16, Pos::Continue},
      {2, 65, 65, 2, 2, 64, Pos::Train},     {2, 50, 61, 4, 2, 33, Pos::Ragged},
      {1, 40, 70, 2, 1, 128, Pos::Continue}, {1, 20, 40, 2, 1, 200, Pos::Train},
      {1, 1, 100, 2, 1, 256, Pos::Decode},   {1, 30, 30, 4, 1, 32, Pos::Train},
  };
  uint64_t seed = 500;
  for (const Case& c : small) {
    SCOPED_TRACE(c.name());
    switch (attn::head_dim_bound(c.E)) {
      case 32:
        check_case<32>(c, seed += 10);
        break;
      case 64:
        check_case<64>(c, seed += 10);
        break;
      case 128:
        check_case<128>(c, seed += 10);
        break;
      default:
        check_case<256>(c, seed += 10);
        break;
    }
  }
}
