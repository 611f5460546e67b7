// The flash attention kernels themselves (backend/cuda/attention_forward_kernel.cuh,
// attention_backward_kernels.cuh, and the bf16 tensor-core attention_tc_*.cuh), compiled as C++
// and run on the CPU by the SIMT emulator (simt_emulator.hpp: a block's threads as real threads,
// barriers, shuffles, atomics, NaN-filled shared memory with a guard; simt_wmma.hpp: wmma tiles),
// launched as attention_forward.cu and attention_backward.cu launch them, against the CPU
// backend (with bf16 operands for the tensor-core kernels). This runs the kernels' thread
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
#include "backend/simt_wmma.hpp"
#include "backend/cuda/attention_backward_kernels.cuh"
#include "backend/cuda/attention_forward_kernel.cuh"
#include "backend/cuda/attention_tc_backward_kernels.cuh"
#include "backend/cuda/attention_tc_forward_kernel.cuh"
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

// The f32 kernels, or the bf16 tensor-core ones (kTc), with their tile sizes.
template <int kE, bool kTc>
struct Tiles;
template <int kE>
struct Tiles<kE, false> {
  using C = attn::Config<kE>;
  static constexpr int kFwdBr = C::kFwdBr, kFwdBc = C::kFwdBc;
};
template <int kE>
struct Tiles<kE, true> {
  using C = attn::tc::Config<kE>;
  static constexpr int kFwdBr = C::kFwdBr, kFwdBc = C::kFwdBc;
};

template <int kE, int kBr, int kBc, bool kDelta, bool kTc>
void forward_kernel(dim3 grid, const attn::FwdArgs& a) {
  if constexpr (kTc)
    simt::launch(grid, attn::tc::kThreads, attn::tc::FwdSmem<kE, kBr, kBc>::kBytes,
                 [&] { attn::tc::flash_forward_tc<kE, kBr, kBc, kDelta>(a); });
  else
    simt::launch(grid, attn::kThreads, attn::FwdSmem<kE, kBr, kBc>::kBytes,
                 [&] { attn::flash_forward<kE, kBr, kBc, kDelta>(a); });
}

// attention_forward.cu's forward_tiles: split plan for `sms` multiprocessors, the kernel, and
// the combine kernel when the keys were split. Returns the number of splits.
template <int kE, int kBr, int kBc, bool kTc>
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
  forward_kernel<kE, kBr, kBc, false, kTc>(grid3(row_tiles, s.B * s.G, a.splits), a);
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
template <int kE, bool kTc>
void backward(Device& d, Buffer& lse, Buffer& dq, Buffer& dk, Buffer& dv) {
  using C = Tiles<kE, kTc>;
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
  forward_kernel<kE, C::kFwdBr, C::kFwdBc, true, kTc>(
      grid3(attn::ceil_div(s.rows(), C::kFwdBr), s.B * s.G), f);
  EXPECT_TRUE(delta.guard_intact());
  for (float x : delta.values()) ASSERT_FALSE(std::isnan(x)) << "a row's D was not written";
  const attn::BwdArgs a{d.q.data(),   d.k.data(), d.v.data(),   d.d_out.data(),
                        d.pos.data(), lse.data(), delta.data(), d.scale,
                        dq.data(),    dk.data(),  dv.data(),    s};
  if constexpr (kTc) {
    using T = attn::tc::Config<kE>;
    simt::launch(grid3(attn::ceil_div(s.S, T::kDkdvBc), s.B * s.G), attn::tc::kThreads,
                 attn::tc::DkdvSmemTc<kE, T::kDkdvBr, T::kDkdvBc>::kBytes,
                 [&] { attn::tc::flash_dkdv_tc<kE, T::kDkdvBr, T::kDkdvBc>(a); });
    simt::launch(grid3(attn::ceil_div(s.rows(), T::kDqBr), s.B * s.G), attn::tc::kThreads,
                 attn::tc::DqSmemTc<kE, T::kDqBr, T::kDqBc>::kBytes,
                 [&] { attn::tc::flash_dq_tc<kE, T::kDqBr, T::kDqBc>(a); });
  } else {
    using T = attn::Config<kE>;
    simt::launch(grid3(attn::ceil_div(s.S, T::kBwdBc), s.B * s.G), attn::kThreads,
                 attn::DkdvSmem<kE, T::kBwdBr, T::kBwdBc>::kBytes,
                 [&] { attn::flash_dkdv<kE, T::kBwdBr, T::kBwdBc>(a); });
    simt::launch(grid3(attn::ceil_div(s.rows(), T::kDqBr), s.B * s.G), attn::kThreads,
                 attn::DqSmem<kE, T::kDqBr, T::kDqBc>::kBytes,
                 [&] { attn::flash_dq<kE, T::kDqBr, T::kDqBc>(a); });
  }
}

// f32: within 1e-5 of the CPU backend. Tensor cores (kTc): within bf16_close of the CPU backend
// with bf16 operands, and every tile size the launchers use.
template <int kE, bool kTc>
void check_case(const Case& c, uint64_t seed) {
  using C = Tiles<kE, kTc>;
  const Inputs in = inputs(c, seed);
  Tensor out, lse;
  Grads g;
  cpu_reference(c, in, out, lse, g, kTc ? opd::core::DType::BF16 : opd::core::DType::F32);
  auto close = [](const std::vector<float>& got, const Tensor& want, double tol) {
    return kTc ? bf16_close(as_double(got), to_double(want))
               : all_close(as_double(got), to_double(want), tol, tol);
  };
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
    int splits = 0;
    if constexpr (kTc)
      splits = forward<kE, C::kFwdBr, C::kFwdBc, true>(d, sms, o, l);
    else
      splits = d.s.rows() <= attn::kDecodeBr
                   ? forward<kE, attn::kDecodeBr, C::kFwdBc, false>(d, sms, o, l)
                   : forward<kE, C::kFwdBr, C::kFwdBc, false>(d, sms, o, l);
    splits_seen = std::max(splits_seen, splits);
    EXPECT_TRUE(o.guard_intact() && l.guard_intact());
    EXPECT_TRUE(close(o.values(), out, 1e-5));
    EXPECT_TRUE(kTc ? same_lse(l.values(), lse, 1e-3, 1e-3) : same_lse(l.values(), lse));
  }
  Buffer l(lse.to_vector()), dq(out_n), dk(in.k.numel()), dv(in.k.numel());
  backward<kE, kTc>(d, l, dq, dk, dv);
  EXPECT_TRUE(dq.guard_intact() && dk.guard_intact() && dv.guard_intact());
  EXPECT_TRUE(close(dq.values(), g.dq, 1e-5));
  EXPECT_TRUE(close(dk.values(), g.dk, 1e-5));
  EXPECT_TRUE(close(dv.values(), g.dv, 1e-5));
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
        check_case<32, false>(c, seed += 10);
        break;
      case 64:
        check_case<64, false>(c, seed += 10);
        break;
      case 128:
        check_case<128, false>(c, seed += 10);
        break;
      default:
        check_case<256, false>(c, seed += 10);
        break;
    }
  }
}

// The bf16 tensor-core kernels on the same kinds of shapes (head dimensions up to 128: every
// forward and dQ tile of 64 rows, dK/dV tiles of 64 keys, both key-tile widths, padding of the
// head dimension, split keys of a decode-sized launch).
TEST(CudaAttentionEmulated, TensorCoreKernelsMatchTheCpuBackendWithBf16Operands) {
  const std::vector<Case> small = {
      {2, 1, 129, 4, 2, 64, Pos::Decode},    {2, 7, 20, 4, 2, 16, Pos::Continue},
      {2, 65, 65, 2, 2, 64, Pos::Train},     {2, 50, 61, 4, 2, 33, Pos::Ragged},
      {1, 40, 70, 2, 1, 128, Pos::Continue}, {1, 30, 30, 4, 1, 32, Pos::Train},
      {1, 70, 70, 2, 1, 100, Pos::Train},
  };
  uint64_t seed = 900;
  for (const Case& c : small) {
    SCOPED_TRACE(c.name());
    switch (attn::head_dim_bound(c.E)) {
      case 32:
        check_case<32, true>(c, seed += 10);
        break;
      case 64:
        check_case<64, true>(c, seed += 10);
        break;
      default:
        check_case<128, true>(c, seed += 10);
        break;
    }
  }
}
