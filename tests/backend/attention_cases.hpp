// Shapes, inputs and CPU-backend references shared by the CUDA attention tests
// (test_cuda_attention.cpp on a GPU and against a tile-loop emulation, and
// test_cuda_attention_emulated.cpp running the kernels on the SIMT emulator).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cuda/attention_tiles.hpp"
#include "backend/ops.hpp"
#include "testing/reference.hpp"

namespace opd::testing::attention_cases {

namespace attn = opd::backend::cuda::attn;
namespace ops = opd::backend;
using core::Tensor;

// Query positions: training (t), continuation (the last T of S positions), decode (T = 1, one
// sequence with a full cache, the next half full), ragged (leading rows that see nothing,
// positions past the end of the keys, repeats).
enum class Pos { Train, Continue, Decode, Ragged };

struct Case {
  int B, T, S, H, G, E;
  Pos pos;
  std::string name() const {
    const char* p[] = {"train", "continue", "decode", "ragged"};
    return std::string(p[static_cast<int>(pos)]) + " B" + std::to_string(B) + " T" +
           std::to_string(T) + " S" + std::to_string(S) + " H" + std::to_string(H) + " G" +
           std::to_string(G) + " E" + std::to_string(E);
  }
  attn::Shape shape() const { return {B, T, H, G, E, S}; }
};

inline std::vector<int32_t> positions(const Case& c) {
  std::vector<int32_t> p;
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < c.T; ++t) {
      switch (c.pos) {
        case Pos::Train:
          p.push_back(t);
          break;
        case Pos::Continue:
          p.push_back(c.S - c.T + t);
          break;
        case Pos::Decode:
          p.push_back(b == 0 ? c.S - 1 : c.S / 2);
          break;
        case Pos::Ragged:
          // b 0: 3 rows that see nothing, then t - 3 (with a repeat); b 1: positions past S.
          p.push_back(b == 0 ? (t < 3 ? -1 - t : (t == 5 ? 1 : t - 3)) : (t * 7) % (c.S + 9));
          break;
      }
    }
  return p;
}

inline const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {2, 1, 300, 4, 1, 64, Pos::Decode},
      {2, 1, 130, 2, 2, 128, Pos::Decode},
      {2, 1, 500, 4, 2, 256, Pos::Decode},
      {2, 7, 7, 2, 1, 16, Pos::Train},
      {2, 7, 20, 4, 2, 64, Pos::Continue},
      {2, 64, 64, 4, 4, 64, Pos::Train},
      {2, 64, 100, 4, 2, 128, Pos::Continue},
      {2, 130, 130, 4, 1, 16, Pos::Train},
      {2, 130, 130, 2, 1, 64, Pos::Ragged},
      {2, 300, 300, 4, 2, 128, Pos::Train},
      {2, 300, 340, 2, 1, 64, Pos::Continue},
      {2, 40, 40, 2, 1, 256, Pos::Train},
      {2, 50, 61, 4, 2, 33, Pos::Ragged},
      {2, 70, 90, 2, 2, 200, Pos::Continue},
      // Tiles whose largest visible count is their first key plus one (j0 + 1): the causal
      // skip and the tile counts at their boundary.
      {2, 1, 129, 4, 2, 64, Pos::Decode},
      {2, 65, 65, 2, 2, 64, Pos::Train},
  };
  return all;
}

struct Inputs {
  Tensor q, k, v, d_out, pos;
  float scale;
};

inline Inputs inputs(const Case& c, uint64_t seed) {
  // q and k scaled up so that the softmax is far from uniform (scores of a few units).
  return {random_tensor({c.B, c.T, c.H, c.E}, seed, -2.0f, 2.0f),
          random_tensor({c.B, c.S, c.G, c.E}, seed + 1, -2.0f, 2.0f),
          random_tensor({c.B, c.S, c.G, c.E}, seed + 2),
          random_tensor({c.B, c.T, c.H, c.E}, seed + 3),
          Tensor::from_vector(positions(c), {c.B, c.T}),
          1.0f / std::sqrt(float(c.E))};
}

struct Grads {
  Tensor dq, dk, dv;
};

// The CPU backend: out and lse, then the gradients from the lse, with f32 or bf16 operands.
inline void cpu_reference(const Case& c, const Inputs& in, Tensor& out, Tensor& lse, Grads& g,
                          core::DType operands = core::DType::F32) {
  out = Tensor::empty({c.B, c.T, c.H, c.E});
  lse = Tensor::empty({c.B, c.H, c.T});
  ops::attention_forward(in.q, in.k, in.v, in.pos, in.scale, out, nullptr, &lse, operands);
  g = {Tensor::empty(in.q.shape()), Tensor::empty(in.k.shape()), Tensor::empty(in.k.shape())};
  ops::attention_backward_from_lse(in.q, in.k, in.v, in.pos, lse, in.d_out, in.scale, g.dq, g.dk,
                                   g.dv, operands);
}

// The bf16 tolerance of the GPU tests: every element within 1% of the largest reference
// magnitude, or 1% of its own.
inline ::testing::AssertionResult bf16_close(const std::vector<double>& got,
                                             const std::vector<double>& want) {
  double scale = 0.0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  return all_close(got, want, 1e-2, 1e-2 * scale);
}

// lse: -inf exactly where the reference has it (rows that see no key), close elsewhere.
inline ::testing::AssertionResult same_lse(const std::vector<float>& got, const Tensor& want,
                                           double rtol = 1e-5, double atol = 1e-6) {
  const std::vector<float> w = want.to_vector();
  std::vector<double> a, e;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (std::isinf(w[i]) || std::isinf(got[i])) {
      if (!(std::isinf(w[i]) && w[i] < 0 && got[i] == w[i]))
        return ::testing::AssertionFailure()
               << "lse[" << i << "] = " << got[i] << ", want " << w[i];
      continue;
    }
    a.push_back(got[i]);
    e.push_back(w[i]);
  }
  return all_close(a, e, rtol, atol);
}

inline std::vector<double> as_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

}  // namespace opd::testing::attention_cases
