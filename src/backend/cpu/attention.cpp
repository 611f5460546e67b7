// CPU causal grouped-query attention: forward (optionally keeping P) and backward from P.
//
// Work goes per (batch b, query head h, block of query rows): the scores of a block are one
// sgemm reading q and k in place (leading dimensions H*E and G*E), only over the keys the block
// can see (j <= max q_pos of the block), so causal training skips the upper triangle block-wise
// and a decode step against a long KV cache reads only the filled part.
#include <cblas.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "backend/cpu/fast_exp.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

// Query rows per block: scores of a block ([kRowBlock, S] floats) stay in cache.
constexpr int64_t kRowBlock = 64;

struct Dims {
  int64_t b = 0, t = 0, h = 0, e = 0, s = 0, g = 0;
};

Dims check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  require_f32(op, "q", q);
  require_f32(op, "k", k);
  require_f32(op, "v", v);
  OPD_CHECK(q.ndim() == 4 && k.ndim() == 4, op,
            ": q [B, T, H, E] and k [B, S, G, E] expected, got ", q.describe(), " and ",
            k.describe());
  Dims d{q.dim(0), q.dim(1), q.dim(2), q.dim(3), k.dim(1), k.dim(2)};
  OPD_CHECK(k.dim(0) == d.b && k.dim(3) == d.e && d.e > 0 && d.g > 0 && d.h % d.g == 0, op, ": k ",
            k.describe(), " does not fit q ", q.describe(), " (same B and E, H a multiple of G)");
  OPD_CHECK(v.shape() == k.shape(), op, ": v ", v.describe(), " must have the shape of k ",
            k.describe());
  return d;
}

void require_shape(const char* op, const char* name, const Tensor& x, const core::Shape& shape) {
  require_f32(op, name, x);
  OPD_CHECK(x.shape() == shape, op, ": ", name, " ", x.describe(), " must have shape ",
            core::shape_str(shape));
}

// A scratch buffer per thread that only grows, so repeated calls do not allocate (or first-touch
// fresh pages) again.
float* scratch(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
  return buf.data();
}

// Number of keys query (b, t) sees.
inline int64_t visible(int32_t pos, int64_t s) {
  return std::clamp<int64_t>(static_cast<int64_t>(pos) + 1, 0, s);
}

// Keys a block of query rows needs: the most any of its rows sees.
int64_t block_keys(const int32_t* pos, int64_t rows, int64_t s) {
  int64_t sv = 0;
  for (int64_t i = 0; i < rows; ++i) sv = std::max(sv, visible(pos[i], s));
  return sv;
}

// In place: row[0, nv) = softmax(row[0, nv)), row[nv, end) = 0 (nv == 0: all 0); returns the
// row's log-sum-exp (-inf when nv == 0). The loops use independent lanes (max, exp, double sum)
// so they vectorise without reassociating.
inline float softmax_row(float* row, int64_t nv, int64_t end) {
  float lse = -std::numeric_limits<float>::infinity();
  constexpr int W = 8;
  if (nv > 0) {
    float lane_max[W];
    for (int u = 0; u < W; ++u) lane_max[u] = row[0];
    int64_t j = 0;
    for (; j + W <= nv; j += W)
      for (int u = 0; u < W; ++u) lane_max[u] = row[j + u] > lane_max[u] ? row[j + u] : lane_max[u];
    float mx = lane_max[0];
    for (int u = 1; u < W; ++u) mx = lane_max[u] > mx ? lane_max[u] : mx;
    for (; j < nv; ++j) mx = row[j] > mx ? row[j] : mx;
    for (int64_t x = 0; x < nv; ++x) row[x] = fast_exp(row[x] - mx);
    double lane_sum[W] = {};
    j = 0;
    for (; j + W <= nv; j += W)
      for (int u = 0; u < W; ++u) lane_sum[u] += row[j + u];
    for (; j < nv; ++j) lane_sum[0] += row[j];
    double sum = 0.0;
    for (int u = 0; u < W; ++u) sum += lane_sum[u];
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t x = 0; x < nv; ++x) row[x] *= inv;
    lse = static_cast<float>(static_cast<double>(mx) + std::log(sum));
  }
  for (int64_t x = std::max<int64_t>(nv, 0); x < end; ++x) row[x] = 0.0f;
  return lse;
}

// In place: ds = p (ds - sum_j ds_j p_j) over n entries (ds holds dP on entry).
inline void softmax_row_backward(const float* p, float* ds, int64_t n) {
  constexpr int W = 4;
  double lane[W] = {};
  int64_t j = 0;
  for (; j + W <= n; j += W)
    for (int u = 0; u < W; ++u) lane[u] += static_cast<double>(ds[j + u]) * p[j + u];
  for (; j < n; ++j) lane[0] += static_cast<double>(ds[j]) * p[j];
  const float c = static_cast<float>((lane[0] + lane[1]) + (lane[2] + lane[3]));
  for (int64_t x = 0; x < n; ++x) ds[x] = p[x] * (ds[x] - c);
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse) {
  const char* op = "attention_forward";
  const Dims d = check_qkv(op, q, k, v);
  OPD_CHECK(
      q_pos.dtype() == DType::I32 && q_pos.is_host() && q_pos.shape() == core::Shape({d.b, d.t}),
      op, ": q_pos must be host i32 [B, T] = [", d.b, ", ", d.t, "], got ", q_pos.describe());
  require_shape(op, "out", out, q.shape());
  if (probs) require_shape(op, "probs", *probs, {d.b, d.h, d.t, d.s});
  if (lse) require_shape(op, "lse", *lse, {d.b, d.h, d.t});

  const int64_t H = d.h, E = d.e, S = d.s, T = d.t, G = d.g, rep = d.h / d.g;
  const int64_t ldq = H * E, ldk = G * E;
  const float* pq = q.data<float>();
  const float* pk = k.data<float>();
  const float* pv = v.data<float>();
  const int32_t* ppos = q_pos.data<int32_t>();
  float* po = out.data<float>();
  float* pp = probs ? probs->data<float>() : nullptr;
  float* pl = lse ? lse->data<float>() : nullptr;
  thread_local std::vector<float> buf;
  float* work = pp ? nullptr : scratch(buf, std::min(kRowBlock, T) * S);

  for (int64_t b = 0; b < d.b; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / rep;
      const float* kb = pk + b * S * ldk + g * E;
      const float* vb = pv + b * S * ldk + g * E;
      for (int64_t t0 = 0; t0 < T; t0 += kRowBlock) {
        const int64_t tb = std::min(kRowBlock, T - t0);
        const int32_t* pos = ppos + b * T + t0;
        const int64_t sv = block_keys(pos, tb, S);
        const float* qb = pq + (b * T + t0) * ldq + h * E;
        float* ob = po + (b * T + t0) * ldq + h * E;
        float* pb = pp ? pp + ((b * H + h) * T + t0) * S : work;
        const int64_t ldp = pp ? S : sv;

        if (sv > 0) {     // scores = scale q k^T over the keys the block sees
          if (tb == 1) {  // decode: a row times the cache, streamed by sgemv
            std::fill(pb, pb + sv, 0.0f);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, sv, E, scale, kb, ldk, qb, 1, 0.0f, pb, 1);
          } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, sv, E, scale, qb, ldq, kb, ldk,
                        0.0f, pb, ldp);
          }
        }
        // Row softmax over the visible keys; masked keys (and keys past sv) get exactly 0.
        const int64_t end = pp ? S : sv;
        float* lb = pl ? pl + (b * H + h) * T + t0 : nullptr;
        Kokkos::parallel_for("opd_softmax", Policy(0, tb), [=](int64_t i) {
          const float l = softmax_row(pb + i * ldp, visible(pos[i], S), end);
          if (lb) lb[i] = l;
        });
        // out = P v
        if (sv == 0) {
          for (int64_t i = 0; i < tb; ++i) std::fill(ob + i * ldq, ob + i * ldq + E, 0.0f);
        } else if (tb == 1) {
          std::fill(ob, ob + E, 0.0f);
          cblas_sgemv(CblasRowMajor, CblasTrans, sv, E, 1.0f, vb, ldk, pb, 1, 0.0f, ob, 1);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, E, sv, 1.0f, pb, ldp, vb, ldk,
                      0.0f, ob, ldq);
        }
      }
    }
  }
}

namespace {

// dP = dO v^T; dS = P (dP - rowsum(dP P)); dq = scale dS k; dk += scale dS^T q; dv += P^T dO,
// for every (b, h, block of query rows) with its P block from `probs_of(b, h, t0, tb, sv, ldp)`
// (which sets the keys the block sees, sv, and P's row stride, ldp).
template <class ProbsOf>
void backward_blocks(const Dims& d, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv,
                     const ProbsOf& probs_of) {
  const int64_t H = d.h, E = d.e, S = d.s, T = d.t, G = d.g, rep = d.h / d.g;
  const int64_t ldq = H * E, ldk = G * E;
  const float* pq = q.data<float>();
  const float* pk = k.data<float>();
  const float* pv = v.data<float>();
  const float* pdo = d_out.data<float>();
  float* pdq = dq.data<float>();
  float* pdk = dk.data<float>();
  float* pdv = dv.data<float>();
  thread_local std::vector<float> buf;
  float* ds = scratch(buf, std::min(kRowBlock, T) * S);

  std::fill(pdk, pdk + dk.numel(), 0.0f);
  std::fill(pdv, pdv + dv.numel(), 0.0f);
  for (int64_t b = 0; b < d.b; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / rep;
      const float* kb = pk + b * S * ldk + g * E;
      const float* vb = pv + b * S * ldk + g * E;
      float* dkb = pdk + b * S * ldk + g * E;
      float* dvb = pdv + b * S * ldk + g * E;
      for (int64_t t0 = 0; t0 < T; t0 += kRowBlock) {
        const int64_t tb = std::min(kRowBlock, T - t0);
        int64_t sv = 0, ldp = S;
        const float* pb = probs_of(b, h, t0, tb, sv, ldp);
        const float* qb = pq + (b * T + t0) * ldq + h * E;
        const float* dob = pdo + (b * T + t0) * ldq + h * E;
        float* dqb = pdq + (b * T + t0) * ldq + h * E;
        if (sv == 0) {
          for (int64_t i = 0; i < tb; ++i) std::fill(dqb + i * ldq, dqb + i * ldq + E, 0.0f);
          continue;
        }
        // dP = dO v^T
        if (tb == 1) {
          std::fill(ds, ds + sv, 0.0f);
          cblas_sgemv(CblasRowMajor, CblasNoTrans, sv, E, 1.0f, vb, ldk, dob, 1, 0.0f, ds, 1);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, sv, E, 1.0f, dob, ldq, vb, ldk,
                      0.0f, ds, sv);
        }
        // dS = P (dP - sum_j dP_j P_j), row by row
        float* dsp = ds;
        Kokkos::parallel_for("opd_dsoftmax", Policy(0, tb), [=](int64_t i) {
          softmax_row_backward(pb + i * ldp, dsp + i * sv, sv);
        });
        if (tb == 1) {
          // dq = scale dS k; dk += scale dS^T q and dv += P^T dO are rank-1 updates.
          std::fill(dqb, dqb + E, 0.0f);
          cblas_sgemv(CblasRowMajor, CblasTrans, sv, E, scale, kb, ldk, ds, 1, 0.0f, dqb, 1);
          cblas_sger(CblasRowMajor, sv, E, scale, ds, 1, qb, 1, dkb, ldk);
          cblas_sger(CblasRowMajor, sv, E, 1.0f, pb, 1, dob, 1, dvb, ldk);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, E, sv, scale, ds, sv, kb, ldk,
                      0.0f, dqb, ldq);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, sv, E, tb, scale, ds, sv, qb, ldq,
                      1.0f, dkb, ldk);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, sv, E, tb, 1.0f, pb, ldp, dob, ldq,
                      1.0f, dvb, ldk);
        }
      }
    }
  }
}

void require_grads(const char* op, const Dims& d, const Tensor& q, const Tensor& k,
                   const Tensor& d_out, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  require_shape(op, "d_out", d_out, q.shape());
  require_shape(op, "dq", dq, q.shape());
  require_shape(op, "dk", dk, k.shape());
  require_shape(op, "dv", dv, k.shape());
  (void)d;
}

}  // namespace

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const char* op = "attention_backward";
  const Dims d = check_qkv(op, q, k, v);
  require_shape(op, "probs", probs, {d.b, d.h, d.t, d.s});
  require_grads(op, d, q, k, d_out, dq, dk, dv);
  const float* pp = probs.data<float>();
  const int64_t H = d.h, T = d.t, S = d.s;
  backward_blocks(d, q, k, v, d_out, scale, dq, dk, dv,
                  [&](int64_t b, int64_t h, int64_t t0, int64_t tb, int64_t& sv, int64_t& ldp) {
                    const float* pb = pp + ((b * H + h) * T + t0) * S;
                    // Keys past the last nonzero column of the block contribute nothing.
                    sv = 0;
                    for (int64_t i = 0; i < tb; ++i) {
                      const float* row = pb + i * S;
                      int64_t j = S;
                      while (j > sv && row[j - 1] == 0.0f) --j;
                      sv = std::max(sv, j);
                    }
                    ldp = S;
                    return pb;
                  });
}

// P recomputed block by block from the scores and the forward's row log-sum-exp, so that only
// O(T) values were kept per head: P_tj = exp(scale q_t k_j - lse_t) over the visible keys.
void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const char* op = "attention_backward_from_lse";
  const Dims d = check_qkv(op, q, k, v);
  require_shape(op, "lse", lse, {d.b, d.h, d.t});
  OPD_CHECK(q_pos.dtype() == DType::I32 && q_pos.is_host() && q_pos.shape() == core::Shape({d.b, d.t}),
            op, ": q_pos must be host i32 [B, T], got ", q_pos.describe());
  require_grads(op, d, q, k, d_out, dq, dk, dv);
  const int64_t H = d.h, E = d.e, S = d.s, T = d.t, G = d.g, rep = d.h / d.g;
  const int64_t ldq = H * E, ldk = G * E;
  const float* pq = q.data<float>();
  const float* pk = k.data<float>();
  const float* pl = lse.data<float>();
  const int32_t* ppos = q_pos.data<int32_t>();
  thread_local std::vector<float> pbuf;
  float* pblock = scratch(pbuf, std::min(kRowBlock, T) * S);
  backward_blocks(d, q, k, v, d_out, scale, dq, dk, dv,
                  [&](int64_t b, int64_t h, int64_t t0, int64_t tb, int64_t& sv, int64_t& ldp) {
                    const int32_t* pos = ppos + b * T + t0;
                    sv = block_keys(pos, tb, S);
                    ldp = sv;
                    if (sv == 0) return static_cast<const float*>(pblock);
                    const float* qb = pq + (b * T + t0) * ldq + h * E;
                    const float* kb = pk + b * S * ldk + (h / rep) * E;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, sv, E, scale, qb, ldq,
                                kb, ldk, 0.0f, pblock, sv);
                    const float* lb = pl + (b * H + h) * T + t0;
                    float* pw = pblock;
                    Kokkos::parallel_for("opd_attention_recompute", Policy(0, tb), [=](int64_t i) {
                      float* row = pw + i * sv;
                      const int64_t nv = visible(pos[i], S);
                      for (int64_t j = 0; j < sv; ++j)
                        row[j] = j < nv ? std::exp(row[j] - lb[i]) : 0.0f;
                    });
                    return static_cast<const float*>(pblock);
                  });
}

}  // namespace opd::backend::cpu
