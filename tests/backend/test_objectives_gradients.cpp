// objective_rows (DESIGN.md §4): every kind x signal mode x support x weight x extra-term variant
// has its gradient checked against central finite differences of an independent float64
// reference loss (PG losses with their stop-gradient quantities frozen), plus the closed forms.
#include <gtest/gtest.h>

#include "objective_reference.hpp"

using namespace opd::testing::objective_ref;

// ---- 1. gradients against finite differences ------------------------------------------------

const Extra kExtras[] = {Extra::None, Extra::Ratio, Extra::NoRatio};

TEST(Objectives, SampledTokenKindsMatchFiniteDifferences) {
  Problem P = make_problem(100, 3, 7, 3);
  int rows = 0;
  for (Signal mode : {Signal::Sampled, Signal::TopK, Signal::Full}) {
    for (Extra e : {Extra::Ratio, Extra::NoRatio}) {
      ObjectiveArgs a;
      a.kind = ObjectiveKind::PgSampled;
      rows += check_against_reference(P, teacher_rows(P, mode), a, e);
      a.clip = 0.1f;  // rho = exp(U(-0.3, 0.3)): some rows clipped, some not
      rows += check_against_reference(P, teacher_rows(P, mode), a, e);
    }
    for (Extra e : kExtras) {
      ObjectiveArgs a;
      a.kind = ObjectiveKind::Sft;
      rows += check_against_reference(P, teacher_rows(P, mode), a, e);
    }
  }
  EXPECT_EQ(rows, 3 * (4 + 3) * 3);
}

TEST(Objectives, PgTopKMatchesFiniteDifferencesForEverySupportAndWeight) {
  int rows = 0;
  for (uint64_t seed : {200u, 300u}) {
    Problem P = make_problem(seed, 3, 7, 3);
    for (Signal mode : {Signal::TopK, Signal::Full}) {
      for (Support s : {Support::Student, Support::Teacher, Support::Intersection, Support::Union,
                        Support::SymDiff}) {
        for (SupportWeight wt :
             {SupportWeight::StudentP, SupportWeight::TeacherP, SupportWeight::Uniform}) {
          for (Extra e : kExtras) {
            ObjectiveArgs a;
            a.kind = ObjectiveKind::PgTopK;
            a.support = s;
            a.weight = wt;
            a.teacher_weight = e == Extra::NoRatio ? 0.7f : 1.0f;
            rows += check_against_reference(P, teacher_rows(P, mode), a, e, e != Extra::Ratio);
          }
          if (mode == Signal::Full) {  // the teacher's top-k computed from its logits
            ObjectiveArgs a;
            a.kind = ObjectiveKind::PgTopK;
            a.support = s;
            a.weight = wt;
            rows += check_against_reference(P, teacher_rows(P, mode, false), a, Extra::None);
          }
        }
      }
    }
  }
  EXPECT_EQ(rows, 2 * (2 * 5 * 3 * 3 + 5 * 3) * 3);
}

TEST(Objectives, DivergenceKindsMatchFiniteDifferences) {
  int rows = 0;
  for (uint64_t seed : {400u, 500u}) {
    Problem P = make_problem(seed, 3, 7, 3);
    for (Extra e : kExtras) {
      ObjectiveArgs a;
      a.kind = ObjectiveKind::TopKRkl;
      rows += check_against_reference(P, teacher_rows(P, Signal::TopK), a, e);
      rows += check_against_reference(P, teacher_rows(P, Signal::Full), a, e);
      a.kind = ObjectiveKind::FullRkl;
      rows += check_against_reference(P, teacher_rows(P, Signal::Full), a, e);
      a.kind = ObjectiveKind::Fkl;
      rows += check_against_reference(P, teacher_rows(P, Signal::Full), a, e);
      for (bool tail : {false, true}) {
        a.tail = tail;
        rows += check_against_reference(P, teacher_rows(P, Signal::TopK), a, e);
      }
      a.kind = ObjectiveKind::Jsd;
      for (float beta : {0.0f, 0.1f, 0.5f, 0.9f, 1.0f}) {
        a.beta = beta;
        rows += check_against_reference(P, teacher_rows(P, Signal::Full), a, e);
      }
    }
  }
  EXPECT_EQ(rows, 2 * 3 * (6 + 5) * 3);
}

