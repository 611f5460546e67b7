// CPU token_stats (backend/ops.hpp): per response position, the student/teacher quantities that
// advantages and the diagnostics of DESIGN.md §5 need — log p(y), H(p), log q(y), H(q), exact
// and top-k KL, and the top-k overlap statistics (ratio, shared mass, overlap-token advantage).
//
// One Kokkos iteration per row; a row reads only its own inputs and writes only its own output
// elements. The one piece of mutable scratch (top-k id sets) is a slot per concurrent thread,
// handed out by a Kokkos UniqueToken and allocated once per call, so the bodies are race-free
// under any host execution space and never allocate per row. Every sum runs in double, and every
// log-probability is formed as (x - max) - log(sum exp(x - max)) so that large logits never
// overflow.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;
using core::Shape;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr const char* kOp = "token_stats";

void check_tensor(const char* name, const Tensor& t, const Shape& shape, DType dtype) {
  OPD_CHECK(t.defined() && t.is_host(), kOp, ": ", name, " must be a defined host tensor");
  OPD_CHECK(t.dtype() == dtype && t.shape() == shape, kOp, ": ", name, " must be ",
            core::dtype_name(dtype), core::shape_str(shape), ", got ", t.describe());
}

// The caller asks for an output by allocating it; an undefined one is skipped (nullptr).
float* output(const char* name, const Tensor& t, int64_t n) {
  if (!t.defined()) return nullptr;
  check_tensor(name, t, {n}, DType::F32);
  return t.data<float>();
}

// Ids index the student's logits row: an out-of-range id would read outside it.
void check_ids(const char* name, const Tensor& ids, int64_t V) {
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    OPD_CHECK(p[i] >= 0 && p[i] < V, kOp, ": ", name, "[", i, "] = ", p[i],
              " is outside the vocabulary [0, ", V, ")");
}

inline void put(float* out, int64_t r, double v) {
  if (out) out[r] = static_cast<float>(v);
}

// Log-normaliser and entropy of softmax(x) over a row: lse = log sum exp x, H = -sum p log p.
// A row without a finite maximum (fully masked, +inf, NaN) has no distribution: NaN.
struct RowSoftmax {
  double lse, entropy;
};

RowSoftmax row_softmax(const float* x, int64_t V) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < V; ++j) m = std::max(m, x[j]);
  if (!std::isfinite(m)) return {kNaN, kNaN};
  const double md = m;
  double s = 0.0, t = 0.0;  // sum e, sum e * (x - m) with e = exp(x - m)
  for (int64_t j = 0; j < V; ++j) {
    const double d = static_cast<double>(x[j]) - md;
    const double e = std::exp(d);
    s += e;
    if (e > 0.0) t += e * d;  // -inf entries carry no mass (0 * -inf would be NaN)
  }
  return {md + std::log(s), std::log(s) - t / s};
}

// Full mode: both softmaxes and KL(p || q) in one pass over the two rows. With dp = z - max z,
// dq = x - max x, e_p = exp(dp), s_p = sum e_p (likewise for q):
//   KL = sum p (log p - log q) = sum e_p (dp - dq) / s_p - log s_p + log s_q,
// accumulated per element so that p = q gives exactly 0 rather than a difference of entropies.
struct RowPair {
  RowSoftmax p, q;
  double kl;
};

RowPair row_pair(const float* z, const float* x, int64_t V) {
  float mz = -std::numeric_limits<float>::infinity(), mx = mz;
  for (int64_t j = 0; j < V; ++j) {
    mz = std::max(mz, z[j]);
    mx = std::max(mx, x[j]);
  }
  if (!std::isfinite(mz) || !std::isfinite(mx)) return {{kNaN, kNaN}, {kNaN, kNaN}, kNaN};
  const double mzd = mz, mxd = mx;
  double sp = 0.0, tp = 0.0, sq = 0.0, tq = 0.0, cross = 0.0;
  for (int64_t j = 0; j < V; ++j) {
    const double dp = static_cast<double>(z[j]) - mzd;
    const double dq = static_cast<double>(x[j]) - mxd;
    const double ep = std::exp(dp), eq = std::exp(dq);
    sp += ep;
    sq += eq;
    if (ep > 0.0) {
      tp += ep * dp;
      cross += ep * (dp - dq);  // +inf where q = 0 < p: KL is infinite there, as it should be
    }
    if (eq > 0.0) tq += eq * dq;
  }
  const double lsp = std::log(sp), lsq = std::log(sq);
  return {{mzd + lsp, lsp - tp / sp}, {mxd + lsq, lsq - tq / sq}, cross / sp - lsp + lsq};
}

// "a comes before b" in a top-k order: larger logit first, ties by the lower id; NaN ranks as
// -inf so that the comparator stays a strict weak ordering whatever the input.
struct Before {
  const float* x;
  static float key(float v) { return v != v ? -std::numeric_limits<float>::infinity() : v; }
  bool operator()(int32_t a, int32_t b) const {
    const float ka = key(x[a]), kb = key(x[b]);
    return ka > kb || (ka == kb && a < b);
  }
};

// The k first ids of row x in the Before order, in no particular order, into out[0, k):
// a heap of the best k so far whose top is the worst of them, O(V log k).
// Softmax is monotone, so the top-k of the logits is the top-k of the probabilities.
void select_topk(const float* x, int64_t V, int64_t k, int32_t* out) {
  const Before before{x};
  for (int64_t j = 0; j < k; ++j) out[j] = static_cast<int32_t>(j);
  std::make_heap(out, out + k, before);
  for (int64_t j = k; j < V; ++j) {
    const int32_t id = static_cast<int32_t>(j);
    if (before(id, out[0])) {
      std::pop_heap(out, out + k, before);
      out[k - 1] = id;
      std::push_heap(out, out + k, before);
    }
  }
}

// log sum_{i<m} exp(lf(i)): -inf for a set without mass (or an empty one), NaN if any term is.
template <class LogF>
double set_lse(int64_t m, const LogF& lf) {
  double mx = -kInf;
  for (int64_t i = 0; i < m; ++i) {
    const double v = lf(i);
    if (std::isnan(v)) return kNaN;
    mx = std::max(mx, v);
  }
  if (mx == -kInf) return -kInf;
  double s = 0.0;
  for (int64_t i = 0; i < m; ++i) s += std::exp(lf(i) - mx);
  return mx + std::log(s);
}

// Over a set of m members with log-probabilities lp(i) under p and lq(i) under q: the masses
// p(S), q(S) and KL(p_bar || q_bar) of the two distributions renormalised on S. The KL is NaN
// when either restriction has no mass (renormalisation undefined), e.g. for an empty set.
struct SetStats {
  double mass_p, mass_q, kl;
};

template <class LogP, class LogQ>
SetStats set_stats(int64_t m, const LogP& lp, const LogQ& lq) {
  const double lse_p = set_lse(m, lp), lse_q = set_lse(m, lq);
  SetStats s{std::exp(lse_p), std::exp(lse_q), kNaN};
  if (!std::isfinite(lse_p) || !std::isfinite(lse_q)) return s;
  double kl = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    const double a = lp(i) - lse_p;  // log p_bar; members without p-mass contribute nothing
    if (a > -kInf) kl += std::exp(a) * (a - (lq(i) - lse_q));
  }
  s.kl = kl;
  return s;
}

// Writes the four overlap outputs for row r from the shared set's statistics.
struct OverlapOut {
  float *ratio, *mass_p, *mass_q, *adv;
  bool any() const { return ratio || mass_p || mass_q || adv; }
  void write(int64_t r, int64_t shared, int64_t k, const SetStats& s) const {
    put(ratio, r, static_cast<double>(shared) / static_cast<double>(k));
    put(mass_p, r, s.mass_p);
    put(mass_q, r, s.mass_q);
    // mean_v p_hat (log q_hat - log p_hat) = -KL(p_hat || q_hat) / |I|; 0 for an empty I.
    put(adv, r, shared == 0 ? 0.0 : (0.0 - s.kl) / static_cast<double>(shared));
  }
  void write_nan(int64_t r) const {
    put(ratio, r, kNaN);
    put(mass_p, r, kNaN);
    put(mass_q, r, kNaN);
    put(adv, r, kNaN);
  }
};

// Keeps, in order, the entries of a[0, n) for which keep(a[i]) holds; returns their count.
template <class Keep>
int64_t compact(int32_t* a, int64_t n, const Keep& keep) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i)
    if (keep(a[i])) a[m++] = a[i];
  return m;
}

// The whole-vocabulary row quantities of a vocabulary shard (ShardRows), checked against the
// rows' y and student ids (ids column 0 is y, columns 1..k the student's ids).
struct ShardLookup {
  const double *lse = nullptr, *entropy = nullptr, *z_at = nullptr;
  int64_t K = 0;
  explicit operator bool() const { return lse != nullptr; }
  RowSoftmax softmax(int64_t r) const { return {lse[r], entropy[r]}; }
  double z(int64_t r, int64_t column) const { return z_at[r * K + column]; }
};

ShardLookup shard_lookup(const ShardRows* shard, const TeacherRows& teacher, const Tensor& y,
                         int64_t n) {
  if (!shard) return {};
  const Tensor& ids = shard->ids;
  OPD_CHECK(ids.defined() && ids.dtype() == DType::I32 && ids.ndim() == 2 && ids.dim(0) == n &&
                static_cast<int64_t>(shard->lse.size()) == n &&
                static_cast<int64_t>(shard->z_at.size()) == ids.numel(),
            kOp, ": shard rows do not match ", n, " rows");
  const int64_t K = ids.dim(1);
  const int32_t* ip = ids.data<int32_t>();
  const int32_t* yp = y.data<int32_t>();
  const bool with_s = teacher.mode == Signal::TopK && teacher.student_ids.defined();
  const int64_t ks = with_s ? teacher.student_ids.dim(1) : 0;
  OPD_CHECK(K >= 1 + ks, kOp, ": shard rows hold ", K, " ids, need y and ", ks, " student ids");
  const int32_t* sp = with_s ? teacher.student_ids.data<int32_t>() : nullptr;
  for (int64_t r = 0; r < n; ++r) {
    OPD_CHECK(ip[r * K] == yp[r], kOp, ": shard row ", r, " is not for token ", yp[r]);
    for (int64_t i = 0; i < ks; ++i)
      OPD_CHECK(ip[r * K + 1 + i] == sp[r * ks + i], kOp, ": shard row ", r,
                " does not hold the student's ids");
  }
  return {shard->lse.data(), shard->entropy.data(), shard->z_at.data(), K};
}

// Full mode on a vocabulary shard: every quantity comes whole from the shard rows — the two
// log-normalisers and entropies, KL(p || q), and p's and q's top-k lists (after y and the
// student's and teacher's lists in ids) with both logits at each of their ids.
void full_sharded(const ShardRows& sh, const TeacherRows& teacher, const Tensor& y, int diag_k,
                  int64_t n, int64_t V, float* o_logp_y, float* o_entropy_p, float* o_logq_y,
                  float* o_entropy_q, float* o_kl_full, float* o_kl_topk, const OverlapOut& ov) {
  OPD_CHECK(sh.full, kOp, ": full mode needs full-mode shard rows (with the teacher's side)");
  check_tensor("teacher.logits", teacher.logits, {n, V}, DType::F32);
  const int64_t K = sh.ids.dim(1), V_all = sh.range.total;
  const bool need_sets = o_kl_topk || ov.any();
  const int64_t k = need_sets ? std::min<int64_t>(diag_k, V_all) : 0;
  const int64_t c_p = 1 + sh.student_k + sh.teacher_k, c_q = c_p + sh.top_k;
  OPD_CHECK(!need_sets || (diag_k >= 1 && sh.top_k == k && c_q + k <= K), kOp,
            ": the shard rows carry top-", sh.top_k, " lists, the diagnostics need top-", k);
  const int32_t* ip = sh.ids.data<int32_t>();
  OPD_CHECK(n == 0 || ip[0] == y.data<int32_t>()[0], kOp, ": shard rows are not for these tokens");
  const ShardRows* s = &sh;
  std::vector<int64_t> scratch(static_cast<std::size_t>(n * k));  // each row's I as columns
  int64_t* sc = scratch.data();
  Kokkos::parallel_for("opd::cpu::token_stats_full_shard", Policy(0, n), [=](int64_t r) {
    const double lse = s->lse[r], lse_u = s->lse_u[r];
    const double* za = s->z_at.data() + r * K;
    const double* ua = s->u_at.data() + r * K;
    put(o_logp_y, r, za[0] - lse);
    put(o_entropy_p, r, s->entropy[r]);
    put(o_logq_y, r, ua[0] - lse_u);
    put(o_entropy_q, r, s->entropy_u[r]);
    put(o_kl_full, r, s->kl_pq[r]);
    if (!need_sets) return;
    // Columns c_p + i hold p's i-th best id, c_q + i q's.
    auto logp = [&](int64_t c) { return za[c] - lse; };
    auto logq = [&](int64_t c) { return ua[c] - lse_u; };
    if (o_kl_topk)
      put(o_kl_topk, r,
          set_stats(
              k, [&](int64_t i) { return logp(c_p + i); }, [&](int64_t i) { return logq(c_p + i); })
              .kl);
    if (ov.any()) {
      const int32_t* row = ip + r * K;
      int64_t* cols = sc + r * k;  // I = S^p ∩ S^q, as columns of S^p
      int64_t m = 0;
      for (int64_t i = 0; i < k; ++i)
        if (std::find(row + c_q, row + c_q + k, row[c_p + i]) != row + c_q + k) cols[m++] = c_p + i;
      const SetStats st = set_stats(
          m, [&](int64_t i) { return logp(cols[i]); }, [&](int64_t i) { return logq(cols[i]); });
      ov.write(r, m, k, st);
    }
  });
}

using Token = Kokkos::Experimental::UniqueToken<Kokkos::DefaultHostExecutionSpace>;
using AcquireToken = Kokkos::Experimental::AcquireUniqueToken<Kokkos::DefaultHostExecutionSpace>;

}  // namespace

void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out, const ShardRows* shard) {
  require_f32(kOp, "z", z);
  OPD_CHECK(z.ndim() == 2, kOp, ": z must be [n, V], got ", z.describe());
  const int64_t n = z.dim(0), V = z.dim(1);
  OPD_CHECK(V >= 1, kOp, ": empty vocabulary");
  check_tensor("y", y, {n}, DType::I32);
  // With a vocabulary shard, ids are global and the row quantities come from `shard`.
  const ShardLookup sh = shard_lookup(shard, teacher, y, n);
  const int64_t V_all = shard ? shard->range.total : V;
  check_ids("y", y, V_all);

  float* o_logp_y = output("logp_y", out.logp_y, n);
  float* o_entropy_p = output("entropy_p", out.entropy_p, n);
  float* o_logq_y = output("logq_y", out.logq_y, n);
  float* o_entropy_q = output("entropy_q", out.entropy_q, n);
  float* o_kl_full = output("kl_full", out.kl_full, n);
  float* o_kl_topk = output("kl_topk", out.kl_topk, n);
  const OverlapOut ov{output("overlap_ratio", out.overlap_ratio, n),
                      output("overlap_mass_p", out.overlap_mass_p, n),
                      output("overlap_mass_q", out.overlap_mass_q, n),
                      output("overlap_adv", out.overlap_adv, n)};

  const float* zp = z.data<float>();
  const int32_t* yp = y.data<int32_t>();
  Token token;
  const int64_t slots = token.size();

  switch (teacher.mode) {
    case Signal::Sampled: {
      // Only log q(y) (and the teacher's own entropy) travel: no set or KL can be formed.
      const float* tq_y = nullptr;
      const float* tq_h = nullptr;
      if (o_logq_y) {
        check_tensor("teacher.logq_y", teacher.logq_y, {n}, DType::F32);
        tq_y = teacher.logq_y.data<float>();
      }
      if (o_entropy_q && teacher.entropy_q.defined()) {
        check_tensor("teacher.entropy_q", teacher.entropy_q, {n}, DType::F32);
        tq_h = teacher.entropy_q.data<float>();
      }
      Kokkos::parallel_for("opd::cpu::token_stats_sampled", Policy(0, n), [=](int64_t r) {
        const float* zr = zp + r * V;
        const RowSoftmax p = sh ? sh.softmax(r) : row_softmax(zr, V);
        put(o_logp_y, r, (sh ? sh.z(r, 0) : static_cast<double>(zr[yp[r]])) - p.lse);
        put(o_entropy_p, r, p.entropy);
        if (o_logq_y) o_logq_y[r] = tq_y[r];
        put(o_entropy_q, r, tq_h ? static_cast<double>(tq_h[r]) : kNaN);
        put(o_kl_full, r, kNaN);
        put(o_kl_topk, r, kNaN);
        ov.write_nan(r);
      });
      return;
    }

    case Signal::TopK: {
      // S^p = the student's ids with log q at them; S^q = the teacher's ids. Every q needed at
      // I = S^p ∩ S^q comes from logq_student_ids, since I ⊂ S^p.
      const bool need_student = o_logq_y || o_kl_topk || ov.any();
      const bool need_teacher = ov.any() || (o_logq_y && teacher.teacher_ids.defined());
      int64_t kp = 0, kq = 0;
      const int32_t *sid = nullptr, *tid = nullptr;
      const float *lqs = nullptr, *lqt = nullptr;
      if (need_student) {
        OPD_CHECK(teacher.student_ids.defined() && teacher.student_ids.ndim() == 2, kOp,
                  ": TopK mode needs teacher.student_ids [n, k]");
        kp = teacher.student_ids.dim(1);
        OPD_CHECK(kp >= 1, kOp, ": teacher.student_ids has no columns");
        check_tensor("teacher.student_ids", teacher.student_ids, {n, kp}, DType::I32);
        check_tensor("teacher.logq_student_ids", teacher.logq_student_ids, {n, kp}, DType::F32);
        check_ids("teacher.student_ids", teacher.student_ids, V_all);
        sid = teacher.student_ids.data<int32_t>();
        lqs = teacher.logq_student_ids.data<float>();
      }
      if (need_teacher) {
        OPD_CHECK(teacher.teacher_ids.defined() && teacher.teacher_ids.ndim() == 2, kOp,
                  ": TopK mode needs teacher.teacher_ids [n, k] for the overlap statistics");
        kq = teacher.teacher_ids.dim(1);
        check_tensor("teacher.teacher_ids", teacher.teacher_ids, {n, kq}, DType::I32);
        check_tensor("teacher.logq_teacher_ids", teacher.logq_teacher_ids, {n, kq}, DType::F32);
        check_ids("teacher.teacher_ids", teacher.teacher_ids, V_all);
        tid = teacher.teacher_ids.data<int32_t>();
        lqt = teacher.logq_teacher_ids.data<float>();
      }
      // Per thread: the teacher's ids sorted (kq) and the positions in S^p of I's members (kp).
      const int64_t slot = ov.any() ? kp + kq : 0;
      std::vector<int32_t> scratch(static_cast<std::size_t>(slots * slot));
      int32_t* sc = scratch.data();
      OPD_CHECK(!shard || !need_student || shard->student_k == kp, kOp,
                ": the shard rows carry ", shard ? shard->student_k : 0, " student ids, not ", kp);
      Kokkos::parallel_for("opd::cpu::token_stats_topk", Policy(0, n), [=](int64_t r) {
        const float* zr = zp + r * V;
        const RowSoftmax p = sh ? sh.softmax(r) : row_softmax(zr, V);
        const int32_t yr = yp[r];
        put(o_logp_y, r, (sh ? sh.z(r, 0) : static_cast<double>(zr[yr])) - p.lse);
        put(o_entropy_p, r, p.entropy);
        put(o_entropy_q, r, kNaN);
        put(o_kl_full, r, kNaN);
        const int32_t* s_r = sid + r * kp;
        const float* lqs_r = lqs + r * kp;
        if (o_logq_y) {
          double v = kNaN;  // y outside both sets: the teacher did not send q(y)
          const int32_t* hit = std::find(s_r, s_r + kp, yr);
          if (hit != s_r + kp) {
            v = lqs_r[hit - s_r];
          } else if (tid) {
            const int32_t* t_r = tid + r * kq;
            const int32_t* th = std::find(t_r, t_r + kq, yr);
            if (th != t_r + kq) v = lqt[r * kq + (th - t_r)];
          }
          put(o_logq_y, r, v);
        }
        auto logp_at = [&](int64_t i) {
          return (sh ? sh.z(r, 1 + i) : static_cast<double>(zr[s_r[i]])) - p.lse;
        };
        auto logq_at = [&](int64_t i) { return static_cast<double>(lqs_r[i]); };
        if (o_kl_topk) put(o_kl_topk, r, set_stats(kp, logp_at, logq_at).kl);
        if (ov.any()) {
          const AcquireToken tok(token);
          int32_t* sorted_q = sc + static_cast<int64_t>(tok.value()) * slot;
          int32_t* pos = sorted_q + kq;
          std::copy(tid + r * kq, tid + (r + 1) * kq, sorted_q);
          std::sort(sorted_q, sorted_q + kq);
          int64_t m = 0;
          for (int64_t i = 0; i < kp; ++i)
            if (std::binary_search(sorted_q, sorted_q + kq, s_r[i]))
              pos[m++] = static_cast<int32_t>(i);
          const SetStats s = set_stats(
              m, [&](int64_t i) { return logp_at(pos[i]); },
              [&](int64_t i) { return logq_at(pos[i]); });
          // The ratio is over the student's k: the share of its top set the teacher also ranks.
          ov.write(r, m, kp, s);
        }
      });
      return;
    }

    case Signal::Full: {
      if (shard) {
        full_sharded(*shard, teacher, y, diag_k, n, V, o_logp_y, o_entropy_p, o_logq_y,
                     o_entropy_q, o_kl_full, o_kl_topk, ov);
        return;
      }
      check_tensor("teacher.logits", teacher.logits, {n, V}, DType::F32);
      const float* xp = teacher.logits.data<float>();
      const bool need_sets = o_kl_topk || ov.any();
      int64_t k = 0;
      if (need_sets) {
        OPD_CHECK(diag_k >= 1, kOp, ": diag_k = ", diag_k, " must be >= 1");
        // A vocabulary smaller than diag_k: every id is in both top sets.
        k = std::min<int64_t>(diag_k, V);
      }
      // Per thread: S^p (k ids, later compacted to I) and S^q (k ids, sorted).
      const int64_t slot = need_sets ? 2 * k : 0;
      std::vector<int32_t> scratch(static_cast<std::size_t>(slots * slot));
      int32_t* sc = scratch.data();
      Kokkos::parallel_for("opd::cpu::token_stats_full", Policy(0, n), [=](int64_t r) {
        const float* zr = zp + r * V;
        const float* xr = xp + r * V;
        const RowPair pq = row_pair(zr, xr, V);
        const int32_t yr = yp[r];
        put(o_logp_y, r, static_cast<double>(zr[yr]) - pq.p.lse);
        put(o_entropy_p, r, pq.p.entropy);
        put(o_logq_y, r, static_cast<double>(xr[yr]) - pq.q.lse);
        put(o_entropy_q, r, pq.q.entropy);
        put(o_kl_full, r, pq.kl);
        if (!need_sets) return;
        const AcquireToken tok(token);
        int32_t* sp = sc + static_cast<int64_t>(tok.value()) * slot;
        int32_t* sq = sp + k;
        select_topk(zr, V, k, sp);
        auto logp_id = [&](int32_t id) { return static_cast<double>(zr[id]) - pq.p.lse; };
        auto logq_id = [&](int32_t id) { return static_cast<double>(xr[id]) - pq.q.lse; };
        if (o_kl_topk)
          put(o_kl_topk, r,
              set_stats(
                  k, [&](int64_t i) { return logp_id(sp[i]); },
                  [&](int64_t i) { return logq_id(sp[i]); })
                  .kl);
        if (ov.any()) {
          select_topk(xr, V, k, sq);
          std::sort(sq, sq + k);
          const int64_t m =
              compact(sp, k, [&](int32_t id) { return std::binary_search(sq, sq + k, id); });
          const SetStats s = set_stats(
              m, [&](int64_t i) { return logp_id(sp[i]); },
              [&](int64_t i) { return logq_id(sp[i]); });
          ov.write(r, m, k, s);
        }
      });
      return;
    }
  }
  OPD_CHECK(false, kOp, ": unknown signal mode ", static_cast<int>(teacher.mode));
}

}  // namespace opd::backend::cpu
