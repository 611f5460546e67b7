// core::log (rank filtering, prefixes, streams, quiet) and core::timer (Stopwatch, PhaseTimers,
// ScopedPhase).
#include <gtest/gtest.h>

#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"

namespace log = opd::core::log;
using opd::core::PhaseTimers;
using opd::core::ScopedPhase;
using opd::core::Stopwatch;
using testing::internal::CaptureStderr;
using testing::internal::CaptureStdout;
using testing::internal::GetCapturedStderr;
using testing::internal::GetCapturedStdout;

namespace {
// Restores the global log settings whatever a test changed.
struct LogSettings : testing::Test {
  void TearDown() override {
    log::set_rank(0);
    log::set_all_ranks(false);
    log::set_quiet(false);
  }
};

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
}  // namespace

TEST_F(LogSettings, Rank0PrintsInfoToStdoutAndWarnErrorToStderr) {
  CaptureStdout();
  CaptureStderr();
  log::info("step ", 3, " loss ", 0.5);
  log::warn("slow");
  log::error("broke");
  EXPECT_EQ(GetCapturedStdout(), "[opd] step 3 loss 0.5\n");
  EXPECT_EQ(GetCapturedStderr(), "[opd] warning: slow\n[opd] error: broke\n");
}

TEST_F(LogSettings, OtherRanksPrintOnlyErrors) {
  log::set_rank(2);
  EXPECT_EQ(log::rank(), 2);
  CaptureStdout();
  CaptureStderr();
  log::info("hidden");
  log::warn("hidden too");
  log::error("rank 2 failed");
  EXPECT_EQ(GetCapturedStdout(), "");
  EXPECT_EQ(GetCapturedStderr(), "[opd] [rank 2] error: rank 2 failed\n");
}

TEST_F(LogSettings, AllRanksPrefixesTheRank) {
  log::set_rank(3);
  log::set_all_ranks(true);
  CaptureStdout();
  CaptureStderr();
  log::info("hello");
  log::warn("careful");
  EXPECT_EQ(GetCapturedStdout(), "[opd] [rank 3] hello\n");
  EXPECT_EQ(GetCapturedStderr(), "[opd] [rank 3] warning: careful\n");
  log::set_rank(0);
  CaptureStdout();
  log::info("zero");
  EXPECT_EQ(GetCapturedStdout(), "[opd] [rank 0] zero\n");
}

TEST_F(LogSettings, QuietDropsInfoAndWarnButNotErrors) {
  log::set_quiet(true);
  EXPECT_FALSE(log::enabled(log::Level::Info));
  EXPECT_TRUE(log::enabled(log::Level::Error));
  CaptureStdout();
  CaptureStderr();
  log::info("a");
  log::warn("b");
  log::error("c");
  EXPECT_EQ(GetCapturedStdout(), "");
  EXPECT_EQ(GetCapturedStderr(), "[opd] error: c\n");
}

TEST_F(LogSettings, ConcurrentLinesDoNotInterleave) {
  CaptureStdout();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 50; ++i) log::info("thread ", t, " line ", i, " ", std::string(40, 'x'));
    });
  for (auto& th : threads) th.join();
  const std::string out = GetCapturedStdout();
  std::size_t lines = 0, start = 0;
  for (std::size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = out.substr(start, nl - start);
    ASSERT_EQ(line.rfind("[opd] thread ", 0), 0u) << line;
    ASSERT_EQ(line.substr(line.size() - 41), " " + std::string(40, 'x')) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 200u);
}

TEST(Timer, StopwatchMeasuresAndResets) {
  Stopwatch sw;
  sleep_ms(30);
  const double s = sw.seconds();
  EXPECT_GE(s, 0.030);
  EXPECT_LT(s, 2.0);
  sw.reset();
  EXPECT_LT(sw.seconds(), s);
}

TEST(Timer, PhasesAccumulateAndTakeResets) {
  Stopwatch outer;
  PhaseTimers pt;
  pt.start("rollout");
  sleep_ms(20);
  pt.stop("rollout");
  {
    ScopedPhase scoring(pt, "scoring");
    EXPECT_TRUE(pt.running("scoring"));
    sleep_ms(20);
  }
  EXPECT_FALSE(pt.running("scoring"));
  pt.start("rollout");
  sleep_ms(20);
  pt.stop("rollout");
  EXPECT_GE(pt.seconds("rollout"), 0.040);

  auto t = pt.take();
  const double wall = outer.seconds();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_GE(t["rollout"], 0.040);
  EXPECT_GE(t["scoring"], 0.020);
  // Disjoint phases cannot add up to more than the wall time around them.
  EXPECT_LE(t["rollout"] + t["scoring"], wall);
  EXPECT_TRUE(pt.take().empty());
  EXPECT_EQ(pt.seconds("rollout"), 0.0);
}

TEST(Timer, RunningPhaseIsSplitAcrossTake) {
  PhaseTimers pt;
  pt.start("step");
  sleep_ms(20);
  auto first = pt.take();
  Stopwatch since_take;
  EXPECT_GE(first["step"], 0.020);
  EXPECT_TRUE(pt.running("step"));
  sleep_ms(20);
  pt.stop("step");
  const double bound = since_take.seconds();
  auto second = pt.take();
  // The second report counts only the time after the first take, not the time before it again.
  EXPECT_GE(second["step"], 0.020);
  EXPECT_LE(second["step"], bound);
}

TEST(Timer, ScopedPhaseStopsOnException) {
  PhaseTimers pt;
  try {
    ScopedPhase p(pt, "work");
    throw std::runtime_error("x");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(pt.running("work"));
  EXPECT_EQ(pt.take().count("work"), 1u);
}

TEST(Timer, MisuseIsAnInternalError) {
  PhaseTimers pt;
  EXPECT_THROW(pt.stop("never"), opd::Error);
  pt.start("a");
  try {
    pt.start("a");
    ADD_FAILURE() << "double start accepted";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Internal);
  }
}
