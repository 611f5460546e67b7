// CPU vocabulary-chunked LM head: logits = (h w^T) / temperature for h [N, D], w [V, D], produced
// one [rows_block, chunk] block at a time with OpenBLAS sgemm and reduced on the fly, so that
// [N, V] logits never exist.
//  - lm_head_stats: streaming (online) log-sum-exp across chunks with a running max m and
//    s = sum exp(l - m) per row; the entropy is streamed too, as t = sum exp(l - m) (l - m)
//    rescaled whenever m moves, so that H = log s - t / s (no cancellation for large logits).
//  - lm_head_cross_entropy_backward: recomputes each block, turns it into
//    dlogits = d_loss[n] (softmax - onehot(target)) / temperature for the rows that contribute, and
//    accumulates dh += dlogits w_chunk and dw_chunk += dlogits^T h_block with sgemm. Only the rows
//    that contribute (target >= 0, d_loss != 0) are gathered and multiplied.
// Row loops are Kokkos parallel_for over the rows of a block; each iteration writes only its row.
#include "backend/cpu/lm_head.hpp"

#include <cblas.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "backend/cpu/fast_exp.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

void check_tensor(const char* op, const char* name, const Tensor& t, const core::Shape& shape,
                  DType dtype) {
  OPD_CHECK(t.defined() && t.is_host(), op, ": ", name, " must be a defined host tensor");
  OPD_CHECK(t.dtype() == dtype && t.shape() == shape, op, ": ", name, " must be ",
            core::dtype_name(dtype), core::shape_str(shape), ", got ", t.describe());
}

struct HeadDims {
  int64_t N, D, V;
};

HeadDims check_head(const char* op, const Tensor& h, const Tensor& w, float temperature,
                    int64_t chunk) {
  OPD_CHECK(h.defined() && h.is_host() && h.dtype() == DType::F32 && h.ndim() == 2, op,
            ": h must be a host f32 [N, D] tensor, got ", h.describe());
  OPD_CHECK(w.defined() && w.is_host() && w.dtype() == DType::F32 && w.ndim() == 2, op,
            ": w must be a host f32 [V, D] tensor, got ", w.describe());
  OPD_CHECK(w.dim(1) == h.dim(1), op, ": h ", h.describe(), " and w ", w.describe(),
            " disagree on D");
  OPD_CHECK(w.dim(0) >= 1, op, ": empty vocabulary");
  OPD_CHECK(std::isfinite(temperature) && temperature > 0.0f, op, ": temperature ", temperature,
            " must be finite and > 0");
  OPD_CHECK(chunk >= 1, op, ": chunk ", chunk, " must be >= 1");
  OPD_CHECK(
      w.dim(0) <= std::numeric_limits<int>::max() && h.dim(1) <= std::numeric_limits<int>::max(),
      op, ": V and D must fit BLAS int");
  return {h.dim(0), h.dim(1), w.dim(0)};
}

// The global vocabulary of a head of V rows held as `range` (VocabRange in ops.hpp).
int64_t check_range(const char* op, const VocabRange& range, int64_t V) {
  if (range.total == 0) {
    OPD_CHECK(range.begin == 0, op, ": a shard begin without the vocabulary's total");
    return V;
  }
  OPD_CHECK(range.begin >= 0 && range.begin + V <= range.total, op, ": shard [", range.begin,
            ", ", range.begin + V, ") outside the vocabulary of ", range.total);
  return range.total;
}

void check_targets(const char* op, const Tensor& targets, int64_t N, int64_t V) {
  check_tensor(op, "targets", targets, {N}, DType::I32);
  const int32_t* tp = targets.data<int32_t>();
  for (int64_t n = 0; n < N; ++n)
    OPD_CHECK(tp[n] < V, op, ": targets[", n, "] = ", tp[n], " is outside the vocabulary of ", V);
}

// Scratch kept per thread across calls (grown when needed), so that a call neither allocates nor
// first-touches fresh pages once the sizes have been seen.
template <class T>
T* scratch(std::vector<T>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
  return buf.data();
}

struct StatsScratch {
  std::vector<float> logits;
  std::vector<double> state;  // m, s, t per block row
};
struct BackwardScratch {
  std::vector<float> logits, hb, dhb, row;  // row: g, lse per block row
  std::vector<int32_t> active, tgt;
};

}  // namespace

HeadBlocking lm_head_blocking(int64_t n_rows, int64_t vocab, int64_t chunk) {
  HeadBlocking b;
  b.rows_block = std::clamp<int64_t>(n_rows, 1, kHeadRowsBlock);
  b.chunk = std::clamp<int64_t>(chunk, 1, std::max<int64_t>(vocab, 1));
  return b;
}

int64_t lm_head_scratch_bytes(int64_t n_rows, int64_t vocab, int64_t d_model, int64_t chunk,
                              bool backward) {
  const HeadBlocking b = lm_head_blocking(n_rows, vocab, chunk);
  int64_t bytes = b.logits_floats() * int64_t(sizeof(float));
  if (!backward) return bytes + 3 * b.rows_block * int64_t(sizeof(double));
  bytes += 2 * b.rows_block * d_model * int64_t(sizeof(float));  // gathered h, dh
  bytes += 2 * b.rows_block * int64_t(sizeof(float));            // g, lse
  bytes += b.rows_block * int64_t(sizeof(int32_t));              // targets of the block
  bytes += n_rows * int64_t(sizeof(int32_t));                    // list of active rows
  return bytes;
}

void lm_head_stats(const Tensor& h, const Tensor& w, const Tensor* targets, float temperature,
                   int64_t chunk, HeadStats& out, const VocabRange& range) {
  const char* op = "lm_head_stats";
  const HeadDims dims = check_head(op, h, w, temperature, chunk);
  const int64_t N = dims.N, D = dims.D, V = dims.V;
  const int64_t V_all = check_range(op, range, V), v0 = range.begin;
  check_tensor(op, "out.lse", out.lse, {N}, DType::F32);
  const bool want_target = out.target_logit.defined();
  const bool want_entropy = out.entropy.defined();
  if (want_target) {
    OPD_CHECK(targets != nullptr, op, ": out.target_logit asks for targets, none given");
    check_tensor(op, "out.target_logit", out.target_logit, {N}, DType::F32);
  }
  if (targets != nullptr) check_targets(op, *targets, N, V_all);
  if (want_entropy) check_tensor(op, "out.entropy", out.entropy, {N}, DType::F32);
  if (N == 0) return;

  const HeadBlocking blk = lm_head_blocking(N, V, chunk);
  const int64_t RB = blk.rows_block, CB = blk.chunk;
  thread_local StatsScratch sc;
  float* L = scratch(sc.logits, blk.logits_floats());
  double* state = scratch(sc.state, 3 * RB);
  double* M = state;
  double* S = state + RB;
  double* T = state + 2 * RB;

  const float* hp = h.data<float>();
  const float* wp = w.data<float>();
  const int32_t* tp = (want_target && targets) ? targets->data<int32_t>() : nullptr;
  float* lse_p = out.lse.data<float>();
  float* tl_p = want_target ? out.target_logit.data<float>() : nullptr;
  float* ent_p = want_entropy ? out.entropy.data<float>() : nullptr;
  const float inv_t = 1.0f / temperature;

  for (int64_t r0 = 0; r0 < N; r0 += RB) {
    const int64_t nb = std::min(RB, N - r0);
    Kokkos::parallel_for("opd::cpu::lm_head_stats::init", Policy(0, nb), [=](int64_t r) {
      M[r] = kNegInf;
      S[r] = 0.0;
      T[r] = 0.0;
      if (tl_p) tl_p[r0 + r] = 0.0f;
    });
    for (int64_t c0 = 0; c0 < V; c0 += CB) {
      const int64_t cn = std::min(CB, V - c0);
      // L[nb, cn] = (h[r0:r0+nb] w[c0:c0+cn]^T) / temperature
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nb), int(cn), int(D), inv_t,
                  hp + r0 * D, int(D), wp + c0 * D, int(D), 0.0f, L, int(cn));
      Kokkos::parallel_for("opd::cpu::lm_head_stats::chunk", Policy(0, nb), [=](int64_t r) {
        const float* lr = L + r * cn;
        if (tp) {
          const int64_t t = tp[r0 + r] - v0;  // local row of the target (may be outside)
          if (t >= c0 && t < c0 + cn) tl_p[r0 + r] = lr[t - c0];
        }
        float cm = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < cn; ++j) cm = std::max(cm, lr[j]);
        const double m_old = M[r];
        const double m_new = std::max(m_old, static_cast<double>(cm));
        if (!(m_new > kNegInf)) return;              // nothing finite yet
        const float mf = static_cast<float>(m_new);  // exact: m_new is one of the floats
        double s = 0.0, t = 0.0;
        if (want_entropy) {
          for (int64_t j = 0; j < cn; ++j) {
            const float d = lr[j] - mf;
            const float e = fast_exp(d);
            s += e;
            t += static_cast<double>(e) * d;
          }
        } else {
          // Eight float lanes (vectorisable, every term <= 1), summed in double per chunk.
          float lane[8] = {};
          int64_t j = 0;
          for (; j + 8 <= cn; j += 8)
            for (int u = 0; u < 8; ++u) lane[u] += fast_exp(lr[j + u] - mf);
          for (; j < cn; ++j) s += fast_exp(lr[j] - mf);
          for (float x : lane) s += x;
        }
        if (S[r] > 0.0) {  // rescale what earlier chunks summed relative to m_old
          const double a = std::exp(m_old - m_new);
          T[r] = a * (T[r] + (m_old - m_new) * S[r]) + t;
          S[r] = a * S[r] + s;
        } else {
          T[r] = t;
          S[r] = s;
        }
        M[r] = m_new;
      });
    }
    Kokkos::parallel_for("opd::cpu::lm_head_stats::finish", Policy(0, nb), [=](int64_t r) {
      const double log_s = std::log(S[r]);
      lse_p[r0 + r] = static_cast<float>(M[r] + log_s);
      if (ent_p) ent_p[r0 + r] = static_cast<float>(log_s - T[r] / S[r]);
    });
  }
}

void lm_head_cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& lse, const Tensor& d_loss, float temperature,
                                    int64_t chunk, Tensor& dh, Tensor& dw,
                                    const VocabRange& range) {
  const char* op = "lm_head_cross_entropy_backward";
  const HeadDims dims = check_head(op, h, w, temperature, chunk);
  const int64_t N = dims.N, D = dims.D, V = dims.V;
  const int64_t v0 = range.begin;
  check_targets(op, targets, N, check_range(op, range, V));
  check_tensor(op, "lse", lse, {N}, DType::F32);
  check_tensor(op, "d_loss", d_loss, {N}, DType::F32);
  check_tensor(op, "dh", dh, {N, D}, DType::F32);
  check_tensor(op, "dw", dw, {V, D}, DType::F32);

  const float* hp = h.data<float>();
  const float* wp = w.data<float>();
  const int32_t* tp = targets.data<int32_t>();
  const float* lse_p = lse.data<float>();
  const float* dl_p = d_loss.data<float>();
  float* dhp = dh.data<float>();
  float* dwp = dw.data<float>();

  Kokkos::parallel_for("opd::cpu::lm_head_ce_backward::zero_dh", Policy(0, N),
                       [=](int64_t n) { std::fill(dhp + n * D, dhp + (n + 1) * D, 0.0f); });
  if (N == 0 || D == 0) return;

  const HeadBlocking blk = lm_head_blocking(N, V, chunk);
  const int64_t RB = blk.rows_block, CB = blk.chunk;
  thread_local BackwardScratch sc;
  // Rows that contribute, in order (a sequential pass: cheap, and the order is deterministic).
  int32_t* active = scratch(sc.active, N);
  int64_t n_active = 0;
  for (int64_t n = 0; n < N; ++n)
    if (tp[n] >= 0 && dl_p[n] != 0.0f) active[n_active++] = static_cast<int32_t>(n);
  if (n_active == 0) return;

  float* L = scratch(sc.logits, blk.logits_floats());
  float* hb = scratch(sc.hb, RB * D);
  float* dhb = scratch(sc.dhb, RB * D);
  float* row = scratch(sc.row, 2 * RB);
  float* G = row;  // d_loss / temperature
  float* LSE = row + RB;
  int32_t* TG = scratch(sc.tgt, RB);
  const float inv_t = 1.0f / temperature;

  for (int64_t a0 = 0; a0 < n_active; a0 += RB) {
    const int64_t nb = std::min(RB, n_active - a0);
    Kokkos::parallel_for("opd::cpu::lm_head_ce_backward::gather", Policy(0, nb), [=](int64_t r) {
      const int64_t n = active[a0 + r];
      std::copy(hp + n * D, hp + (n + 1) * D, hb + r * D);
      std::fill(dhb + r * D, dhb + (r + 1) * D, 0.0f);
      G[r] = dl_p[n] * inv_t;
      LSE[r] = lse_p[n];
      TG[r] = static_cast<int32_t>(tp[n] - v0);  // local row; outside [0, V): no one-hot here
    });
    for (int64_t c0 = 0; c0 < V; c0 += CB) {
      const int64_t cn = std::min(CB, V - c0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nb), int(cn), int(D), inv_t, hb,
                  int(D), wp + c0 * D, int(D), 0.0f, L, int(cn));
      // dlogits (w.r.t. h w^T) = d_loss (softmax - onehot) / temperature, in place.
      Kokkos::parallel_for("opd::cpu::lm_head_ce_backward::dlogits", Policy(0, nb),
                           [=](int64_t r) {
                             float* lr = L + r * cn;
                             const float g = G[r], l0 = LSE[r];
                             for (int64_t j = 0; j < cn; ++j) lr[j] = g * fast_exp(lr[j] - l0);
                             const int64_t t = TG[r];
                             if (t >= c0 && t < c0 + cn) lr[t - c0] -= g;
                           });
      // dh_block += dlogits w_chunk ; dw_chunk += dlogits^T h_block
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nb), int(D), int(cn), 1.0f, L,
                  int(cn), wp + c0 * D, int(D), 1.0f, dhb, int(D));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(cn), int(D), int(nb), 1.0f, L,
                  int(cn), hb, int(D), 1.0f, dwp + c0 * D, int(D));
    }
    Kokkos::parallel_for("opd::cpu::lm_head_ce_backward::scatter", Policy(0, nb),
                         [=](int64_t r) {
                           const int64_t n = active[a0 + r];
                           std::copy(dhb + r * D, dhb + (r + 1) * D, dhp + n * D);
                         });
  }
}

}  // namespace opd::backend::cpu
