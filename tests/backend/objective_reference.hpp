// Float64 reference implementations of the distillation objectives and random problems, for
// the objective_rows tests (test_objectives_gradients.cpp, test_objectives_laws.cpp).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "testing/reference.hpp"

namespace opd::testing::objective_ref {

using opd::core::DType;
using opd::core::Tensor;
using namespace opd::testing;
namespace ops = opd::backend;
using ops::ObjectiveArgs;
using ops::ObjectiveKind;
using ops::Signal;
using ops::Support;
using ops::SupportWeight;
using ops::TeacherRows;

// ---- float64 reference helpers ------------------------------------------------------------

inline std::vector<double> log_softmax(const double* x, int64_t V) {
  double m = -INFINITY;
  for (int64_t j = 0; j < V; ++j) m = std::max(m, x[j]);
  double s = 0;
  for (int64_t j = 0; j < V; ++j) s += std::exp(x[j] - m);
  std::vector<double> out(V);
  for (int64_t j = 0; j < V; ++j) out[j] = x[j] - m - std::log(s);
  return out;
}

inline std::vector<double> exp_all(const std::vector<double>& l) {
  std::vector<double> out(l.size());
  for (std::size_t j = 0; j < l.size(); ++j) out[j] = std::exp(l[j]);
  return out;
}

// The k largest of a row, descending (ties: lower id first).
inline std::vector<int> top_ids(const double* x, int64_t V, int64_t k) {
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return x[a] > x[b]; });
  order.resize(k);
  return order;
}

// ---- a random problem --------------------------------------------------------------------

enum class Extra { None, Ratio, NoRatio };

struct Problem {
  int64_t n = 0, V = 0, k = 0;
  std::vector<double> z, u;  // the exact values of the float tensors zt, ut
  Tensor zt, ut, y, logmu, adv, baseline, w;
  Tensor sid, slq, tid, tlq, logq_y;
  std::vector<std::vector<int>> s_list, t_list;
};

inline Tensor f32(const std::vector<double>& v, const std::vector<int64_t>& shape) {
  return from_double(v, shape);
}

// Random z and teacher logits u; row 1 of u is a perturbation of z (so top-k sets overlap).
// same_teacher: u = z exactly.
// mask_last: the last token is masked (-inf) for both models.
inline Problem make_problem(uint64_t seed, int64_t n, int64_t V, int64_t k, bool same_teacher = false,
                     bool mask_last = false) {
  Problem P;
  P.n = n;
  P.V = V;
  P.k = k;
  P.zt = random_tensor({n, V}, seed, -2.0f, 2.0f);
  P.ut = random_tensor({n, V}, seed + 1, -2.0f, 2.0f);
  if (same_teacher) {
    P.ut = P.zt.clone();
  } else if (n > 1) {
    Tensor noise = random_tensor({V}, seed + 2, -0.3f, 0.3f);
    for (int64_t j = 0; j < V; ++j)
      P.ut.data<float>()[V + j] = P.zt.data<float>()[V + j] + noise.data<float>()[j];
  }
  if (mask_last)
    for (int64_t r = 0; r < n; ++r) {
      P.zt.data<float>()[r * V + V - 1] = -std::numeric_limits<float>::infinity();
      P.ut.data<float>()[r * V + V - 1] = -std::numeric_limits<float>::infinity();
    }
  P.z = to_double(P.zt);
  P.u = to_double(P.ut);
  P.y = random_ids({n}, static_cast<int32_t>(V), seed + 3);
  Tensor delta = random_tensor({n}, seed + 4, -0.3f, 0.3f);
  std::vector<double> logmu(n), lqy(n);
  std::vector<double> sl(n * k), tl(n * k);
  std::vector<int32_t> si(n * k), ti(n * k);
  for (int64_t r = 0; r < n; ++r) {
    std::vector<double> lp = log_softmax(&P.z[r * V], V), lq = log_softmax(&P.u[r * V], V);
    const int yr = P.y.data<int32_t>()[r];
    logmu[r] = lp[yr] - delta.data<float>()[r];  // rho = exp(delta)
    lqy[r] = lq[yr];
    P.s_list.push_back(top_ids(&P.z[r * V], V, k));
    P.t_list.push_back(top_ids(&P.u[r * V], V, k));
    for (int64_t i = 0; i < k; ++i) {
      si[r * k + i] = P.s_list[r][i];
      ti[r * k + i] = P.t_list[r][i];
      sl[r * k + i] = lq[P.s_list[r][i]];
      tl[r * k + i] = lq[P.t_list[r][i]];
    }
  }
  P.logmu = f32(logmu, {n});
  P.logq_y = f32(lqy, {n});
  P.adv = random_tensor({n}, seed + 5, -1.0f, 1.0f);
  P.baseline = random_tensor({n}, seed + 6, -0.5f, 0.5f);
  P.w = random_tensor({n}, seed + 7, 0.5f, 1.5f);
  P.sid = Tensor::from_vector(si, {n, k});
  P.tid = Tensor::from_vector(ti, {n, k});
  P.slq = f32(sl, {n, k});
  P.tlq = f32(tl, {n, k});
  return P;
}

inline TeacherRows teacher_rows(const Problem& P, Signal mode, bool full_teacher_ids = true) {
  TeacherRows t;
  t.mode = mode;
  if (mode == Signal::Sampled) t.logq_y = P.logq_y;
  if (mode == Signal::TopK) {
    t.student_ids = P.sid;
    t.logq_student_ids = P.slq;
    t.teacher_ids = P.tid;
    t.logq_teacher_ids = P.tlq;
  }
  if (mode == Signal::Full) {
    t.logits = P.ut;
    t.student_ids = P.sid;
    if (full_teacher_ids) t.teacher_ids = P.tid;
  }
  return t;
}

struct Result {
  std::vector<double> loss, dz;
};

inline Result run(const Problem& P, const TeacherRows& t, const ObjectiveArgs& args, Extra extra,
           bool with_baseline = true) {
  Tensor loss = Tensor::empty({P.n}), dz = Tensor::empty({P.n, P.V});
  ObjectiveArgs a = args;
  a.use_ratio = extra == Extra::Ratio;
  Tensor none;
  ops::objective_rows(P.zt, t, P.y, a.use_ratio ? P.logmu : none,
                      extra == Extra::None ? none : P.adv, with_baseline ? P.baseline : none, P.w,
                      a, loss, dz);
  return {to_double(loss), to_double(dz)};
}

// ---- the reference loss of one row, as a function of that row's logits -------------------

struct RefRow {
  const Problem& P;
  int64_t r;
  ObjectiveArgs args;
  Signal mode;
  Extra extra;
  bool with_baseline;
  std::vector<double> lq, q;
  std::map<int, double> frozen_a;  // PgTopK: sg[c_v r_v] at the current logits
  double lp_y0 = 0;

  RefRow(const Problem& P_, int64_t r_, const ObjectiveArgs& a, Signal m, Extra e, bool wb)
      : P(P_), r(r_), args(a), mode(m), extra(e), with_baseline(wb) {
    args.use_ratio = e == Extra::Ratio;
    lq = log_softmax(&P.u[r * P.V], P.V);
    q = exp_all(lq);
    std::vector<double> lp0 = log_softmax(&P.z[r * P.V], P.V);
    lp_y0 = lp0[yr()];
    if (args.kind == ObjectiveKind::PgTopK) {
      std::vector<int> S = support();
      const double b = with_baseline ? P.baseline.data<float>()[r] : 0.0;
      double ps = 0, qs = 0;
      for (int v : S) ps += std::exp(lp0[v]), qs += q[v];
      for (int v : S) {
        double c = 1.0 / S.size();
        if (args.weight == SupportWeight::StudentP) c = std::exp(lp0[v]) / ps;
        if (args.weight == SupportWeight::TeacherP) c = q[v] / qs;
        frozen_a[v] = c * (args.teacher_weight * (lq[v] - lp0[v]) - b);
      }
    }
  }
  int yr() const { return P.y.data<int32_t>()[r]; }
  double w() const { return P.w.data<float>()[r]; }

  std::vector<int> support() const {
    std::set<int> s(P.s_list[r].begin(), P.s_list[r].end());
    std::set<int> t(P.t_list[r].begin(), P.t_list[r].end());
    std::set<int> out;
    switch (args.support) {
      case Support::Student:
        out = s;
        break;
      case Support::Teacher:
        out = t;
        break;
      case Support::Intersection:
        for (int v : s)
          if (t.count(v)) out.insert(v);
        break;
      case Support::Union:
        out = s;
        out.insert(t.begin(), t.end());
        break;
      case Support::SymDiff:
        for (int v : s)
          if (!t.count(v)) out.insert(v);
        for (int v : t)
          if (!s.count(v)) out.insert(v);
        break;
    }
    return {out.begin(), out.end()};
  }

  static double kl(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;  // KL(a || b) of probability vectors
    for (std::size_t i = 0; i < a.size(); ++i)
      if (a[i] > 0) s += a[i] * (std::log(a[i]) - std::log(b[i]));
    return s;
  }

  double kind_loss(const std::vector<double>& lp) const {
    const std::vector<double> p = exp_all(lp);
    const double wr = w();
    switch (args.kind) {
      case ObjectiveKind::PgSampled:
        return 0.0;
      case ObjectiveKind::Sft:
        return -wr * lp[yr()];
      case ObjectiveKind::PgTopK: {
        double s = 0;
        for (auto [v, a] : frozen_a) s -= a * lp[v];
        return wr * s;
      }
      case ObjectiveKind::TopKRkl: {
        std::vector<double> pb, qb;
        for (int v : P.s_list[r]) pb.push_back(p[v]), qb.push_back(q[v]);
        double ps = std::accumulate(pb.begin(), pb.end(), 0.0);
        double qs = std::accumulate(qb.begin(), qb.end(), 0.0);
        for (auto& x : pb) x /= ps;
        for (auto& x : qb) x /= qs;
        return wr * kl(pb, qb);
      }
      case ObjectiveKind::FullRkl:
        return wr * kl(p, q);
      case ObjectiveKind::Fkl: {
        if (mode == Signal::Full) return wr * kl(q, p);
        std::vector<double> pb, qb;
        for (int v : P.t_list[r]) pb.push_back(p[v]), qb.push_back(q[v]);
        double ps = std::accumulate(pb.begin(), pb.end(), 0.0);
        double qs = std::accumulate(qb.begin(), qb.end(), 0.0);
        if (args.tail) {
          pb.push_back(1.0 - ps);
          qb.push_back(1.0 - qs);
          return wr * kl(qb, pb);
        }
        for (auto& x : pb) x /= ps;
        for (auto& x : qb) x /= qs;
        return wr * kl(qb, pb);
      }
      case ObjectiveKind::Jsd: {
        const double beta = args.beta;
        if (beta == 0.0) return wr * kl(q, p);
        if (beta == 1.0) return wr * kl(p, q);
        std::vector<double> m(p.size());
        for (std::size_t j = 0; j < p.size(); ++j) m[j] = beta * q[j] + (1 - beta) * p[j];
        return wr * (beta * kl(q, m) + (1 - beta) * kl(p, m));
      }
    }
    return NAN;
  }

  // The loss whose value is reported and whose gradient the kernel returns.
  double loss(const std::vector<double>& zr) const {
    std::vector<double> lp = log_softmax(zr.data(), P.V);
    double L = kind_loss(lp);
    if (extra != Extra::None) {
      const double a = P.adv.data<float>()[r];
      double rho;
      if (extra == Extra::Ratio)
        rho = std::exp(lp[yr()] - P.logmu.data<float>()[r]);
      else
        rho = std::exp(lp[yr()] - lp_y0);  // 1 in value, gradient of log p(y)
      double v = rho * a;
      if (extra == Extra::Ratio && args.clip > 0)
        v = std::min(v, std::clamp(rho, 1.0 - args.clip, 1.0 + args.clip) * a);
      L -= w() * v;
    }
    return L;
  }
};

inline std::string describe(const ObjectiveArgs& a, Signal mode, Extra e) {
  const char* kinds[] = {"PgSampled", "PgTopK", "TopKRkl", "FullRkl", "Fkl", "Jsd", "Sft"};
  const char* modes[] = {"Sampled", "TopK", "Full"};
  const char* sup[] = {"Student", "Teacher", "Intersection", "Union", "SymDiff"};
  const char* wts[] = {"StudentP", "TeacherP", "Uniform"};
  const char* ex[] = {"none", "ratio", "no-ratio"};
  return std::string(kinds[int(a.kind)]) + " mode=" + modes[int(mode)] +
         " support=" + sup[int(a.support)] + " weight=" + wts[int(a.weight)] +
         " tail=" + std::to_string(a.tail) + " beta=" + std::to_string(a.beta) +
         " clip=" + std::to_string(a.clip) + " extra=" + ex[int(e)];
}

// Checks loss values and gradients of every row against the reference and its finite
// differences. Returns the number of rows checked.
inline int check_against_reference(const Problem& P, const TeacherRows& t, const ObjectiveArgs& args,
                            Extra extra, bool with_baseline = true) {
  SCOPED_TRACE(describe(args, t.mode, extra));
  Result res = run(P, t, args, extra, with_baseline);
  for (int64_t r = 0; r < P.n; ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    RefRow ref(P, r, args, t.mode, extra, with_baseline);
    std::vector<double> zr(P.z.begin() + r * P.V, P.z.begin() + (r + 1) * P.V);
    EXPECT_NEAR(res.loss[r], ref.loss(zr), 1e-5 * (1 + std::abs(ref.loss(zr))));
    std::vector<double> fd =
        finite_difference([&](const std::vector<double>& x) { return ref.loss(x); }, zr);
    std::vector<double> got(res.dz.begin() + r * P.V, res.dz.begin() + (r + 1) * P.V);
    EXPECT_TRUE(all_close(got, fd, 1e-4, 2e-6));
  }
  return static_cast<int>(P.n);
}


}  // namespace opd::testing::objective_ref
