// MetricsH5 / read_metrics_h5: exact round trips, NaN padding of late and missing metrics, nested
// names, reopening with keep_through (truncation, fresh start, missing file) so that a resumed
// run's file equals an uninterrupted one's, and refusal of files that are not metrics files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "io/hdf5_file.hpp"
#include "io/io_test_util.hpp"
#include "io/metrics_h5.hpp"

namespace opd::io {
namespace {

using testing::TempDir;
using testing::throws_input;
using testing::write_file;
using Row = std::vector<std::pair<std::string, double>>;
using Table = std::map<std::string, std::vector<double>>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Equality where NaN equals NaN (padding is NaN), everything else bit-for-bit as written.
::testing::AssertionResult same_column(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "length " << a.size() << " vs " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i) {
    bool eq = (std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i];
    if (!eq) return ::testing::AssertionFailure() << "row " << i << ": " << a[i] << " vs " << b[i];
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_table(const Table& a, const Table& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " metrics";
  for (const auto& [name, col] : a) {
    auto it = b.find(name);
    if (it == b.end()) return ::testing::AssertionFailure() << "missing metric " << name;
    auto r = same_column(col, it->second);
    if (!r) return r << " in " << name;
  }
  return ::testing::AssertionSuccess();
}

// Step s of a simulated run: loss always, kl from step 3 on, eval/accuracy every 2nd step.
Row run_row(int64_t s) {
  Row r{{"loss", 1.0 / static_cast<double>(s)}, {"entropy_p/bucket_3", 0.1 * s}};
  if (s >= 3) r.emplace_back("kl", 0.01 * s + 1e-17);
  if (s % 2 == 0) r.emplace_back("eval/accuracy", s / 100.0);
  return r;
}

TEST(MetricsH5, AppendAndReadBackExactly) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  const double tricky = 0.1 + 0.2;  // not representable in float32: must come back exact
  {
    MetricsH5 m(path, -1);
    m.append(1, {{"loss", 2.5}, {"x", tricky}, {"grad/norm", 1e-300}});
    m.append(2,
             {{"loss", -0.0}, {"x", std::numeric_limits<double>::infinity()}, {"grad/norm", 7.0}});
    EXPECT_EQ(m.rows(), 2);
  }
  std::vector<int64_t> steps;
  Table t = read_metrics_h5(path, &steps);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t["loss"], (std::vector<double>{2.5, -0.0}));
  EXPECT_TRUE(std::signbit(t["loss"][1]));
  EXPECT_EQ(t["x"], (std::vector<double>{tricky, std::numeric_limits<double>::infinity()}));
  EXPECT_EQ(t["grad/norm"], (std::vector<double>{1e-300, 7.0}));
}

TEST(MetricsH5, ReadableWhileOpen) {
  // Flushed after every append: another reader sees the rows while the writer is still open.
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  MetricsH5 m(path, -1);
  m.append(10, {{"loss", 1.0}});
  m.append(20, {{"loss", 0.5}});
  std::vector<int64_t> steps;
  Table t = read_metrics_h5(path, &steps);
  EXPECT_EQ(steps, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(t["loss"], (std::vector<double>{1.0, 0.5}));
}

TEST(MetricsH5, LateAndMissingMetricsArePaddedWithNaN) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsH5 m(path, -1);
    m.append(1, {{"a", 1.0}});
    m.append(2, {{"a", 2.0}, {"b/c", 20.0}});  // b/c first seen at step 2
    m.append(3, {{"b/c", 30.0}});              // a missing at step 3
    m.append(4, {});                           // nothing at all
  }
  Table t = read_metrics_h5(path);
  EXPECT_TRUE(same_column(t["a"], {1.0, 2.0, kNaN, kNaN}));
  EXPECT_TRUE(same_column(t["b/c"], {kNaN, 20.0, 30.0, kNaN}));
  // "b/c" is a dataset c in a group b.
  h5::File f = h5::File::open_read_only(path);
  EXPECT_EQ(f.object_type("b"), H5I_GROUP);
  EXPECT_EQ(f.object_type("b/c"), H5I_DATASET);
}

TEST(MetricsH5, EmptyFileReadsBackEmpty) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  { MetricsH5 m(path, -1); }
  std::vector<int64_t> steps{99};
  EXPECT_TRUE(read_metrics_h5(path, &steps).empty());
  EXPECT_TRUE(steps.empty());
}

TEST(MetricsH5, ResumedRunEqualsUninterruptedRun) {
  TempDir dir;
  const std::string whole = dir / "whole.h5", resumed = dir / "resumed.h5";
  {
    MetricsH5 m(whole, -1);
    for (int64_t s = 1; s <= 8; ++s) m.append(s, run_row(s));
  }
  // Interrupted after step 6, with the last checkpoint at step 4 (and a metric, "late", that
  // only appeared after the checkpoint): reopening keeps steps 1..4 and the run redoes 5..8.
  {
    MetricsH5 m(resumed, -1);
    for (int64_t s = 1; s <= 6; ++s) {
      Row r = run_row(s);
      if (s == 6) {
        r.emplace_back("late", 1.0);
        r.emplace_back("late_group/x", 2.0);
        r.emplace_back("entropy_p/late", 3.0);  // in a group that stays
      }
      m.append(s, r);
    }
  }
  {
    MetricsH5 m(resumed, 4);
    EXPECT_EQ(m.rows(), 4);
    for (int64_t s = 5; s <= 8; ++s) m.append(s, run_row(s));
  }
  std::vector<int64_t> sw, sr;
  Table tw = read_metrics_h5(whole, &sw), tr = read_metrics_h5(resumed, &sr);
  EXPECT_EQ(sw, sr);
  EXPECT_EQ(sr, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  // The metric that first appeared after the checkpoint is gone, as in the uninterrupted run.
  EXPECT_FALSE(tr.count("late"));
  EXPECT_FALSE(tr.count("late_group/x"));
  EXPECT_FALSE(tr.count("entropy_p/late"));
  {
    // The group it alone needed is gone too; the shared one stays.
    h5::File f = h5::File::open_read_only(resumed);
    EXPECT_EQ(f.object_type("late_group"), H5I_BADID);
    EXPECT_EQ(f.object_type("entropy_p/bucket_3"), H5I_DATASET);
  }
  EXPECT_TRUE(same_table(tw, tr));
  EXPECT_TRUE(same_column(tr["kl"], {kNaN, kNaN, 0.03 + 1e-17, 0.04 + 1e-17, 0.05 + 1e-17,
                                     0.06 + 1e-17, 0.07 + 1e-17, 0.08 + 1e-17}));
}

TEST(MetricsH5, ReopenTruncatesAndKeepsAppending) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsH5 m(path, -1);
    m.append(100, {{"loss", 1.0}});
    m.append(200, {{"loss", 2.0}});
    m.append(300, {{"loss", 3.0}});
  }
  {
    // keep_through between steps: rows with step <= 250.
    MetricsH5 m(path, 250);
    EXPECT_EQ(m.rows(), 2);
  }
  std::vector<int64_t> steps;
  EXPECT_EQ(read_metrics_h5(path, &steps)["loss"], (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(steps, (std::vector<int64_t>{100, 200}));
  {
    // keep_through past the end keeps everything; appends continue after it.
    MetricsH5 m(path, 1000);
    EXPECT_EQ(m.rows(), 2);
    m.append(260, {{"loss", 2.6}});
  }
  EXPECT_EQ(read_metrics_h5(path, &steps)["loss"], (std::vector<double>{1.0, 2.0, 2.6}));
  {
    // keep_through before the first step keeps nothing (but the columns stay, empty).
    MetricsH5 m(path, 5);
    EXPECT_EQ(m.rows(), 0);
  }
  EXPECT_EQ(read_metrics_h5(path, &steps)["loss"], std::vector<double>{});
  EXPECT_TRUE(steps.empty());
  {
    // keep_through < 0 starts a new, empty file.
    MetricsH5 m(path, -1);
  }
  EXPECT_TRUE(read_metrics_h5(path).empty());
}

TEST(MetricsH5, ResumeWithoutFileStartsOne) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsH5 m(path, 40);
    m.append(41, {{"loss", 1.0}});
  }
  std::vector<int64_t> steps;
  EXPECT_EQ(read_metrics_h5(path, &steps)["loss"], (std::vector<double>{1.0}));
  EXPECT_EQ(steps, (std::vector<int64_t>{41}));
}

TEST(MetricsH5, RepairsColumnsShorterThanTheStepColumn) {
  // A run killed inside an append after a metric column grew but before the step column did
  // leaves a longer metric column; one killed differently could leave a shorter one. Reopening
  // evens both out.
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsH5 m(path, -1);
    m.append(1, {{"a", 1.0}, {"b", 10.0}});
    m.append(2, {{"a", 2.0}, {"b", 20.0}});
  }
  {
    h5::File f = h5::File::open_read_write(path);
    {
      h5::Dataset a = f.open_dataset("a");
      a.set_extent({3});
      double v = 3.0;
      a.write(H5T_NATIVE_DOUBLE, &v, {2}, {1});
      h5::Dataset b = f.open_dataset("b");
      b.set_extent({1});
    }
    f.close();
  }
  {
    MetricsH5 m(path, 100);
    EXPECT_EQ(m.rows(), 2);
  }
  Table t = read_metrics_h5(path);
  EXPECT_EQ(t["a"], (std::vector<double>{1.0, 2.0}));
  EXPECT_TRUE(same_column(t["b"], {10.0, kNaN}));
}

TEST(MetricsH5, RejectsMisuse) {
  TempDir dir;
  MetricsH5 m(dir / "metrics.h5", -1);
  m.append(5, {{"loss", 1.0}});
  EXPECT_THROW(m.append(5, {{"loss", 1.0}}), opd::Error);                 // step not increasing
  EXPECT_THROW(m.append(6, {{"loss", 1.0}, {"loss", 2.0}}), opd::Error);  // twice in a row
  EXPECT_THROW(m.append(6, {{"step", 1.0}}), opd::Error);                 // reserved
  EXPECT_THROW(m.append(6, {{"/abs", 1.0}}), opd::Error);
  EXPECT_THROW(m.append(6, {{"a//b", 1.0}}), opd::Error);
  EXPECT_THROW(m.append(6, {{"", 1.0}}), opd::Error);
}

TEST(MetricsH5, RefusesFilesThatAreNotMetricsFiles) {
  TempDir dir;
  // Not HDF5 at all.
  const std::string junk = dir / "junk.h5";
  write_file(junk, "not an hdf5 file");
  EXPECT_TRUE(throws_input([&] { MetricsH5 m(junk, 3); }, {junk}));
  EXPECT_TRUE(throws_input([&] { read_metrics_h5(junk); }, {junk}));
  // HDF5 without a step column.
  const std::string other = dir / "other.h5";
  {
    h5::File f = h5::File::create(other);
    f.create_dataset("weights", H5T_IEEE_F32LE, {4}).shape();
    f.close();
  }
  EXPECT_TRUE(throws_input([&] { MetricsH5 m(other, 3); }, {other, "step"}));
  EXPECT_TRUE(throws_input([&] { read_metrics_h5(other); }, {other, "step"}));
  // Missing file.
  EXPECT_TRUE(throws_input([&] { read_metrics_h5(dir / "missing.h5"); }, {"missing.h5"}));
  // A directory that does not exist.
  EXPECT_TRUE(throws_input([&] { MetricsH5 m(dir / "no/such/dir/m.h5", -1); }, {"m.h5"}));
}

}  // namespace
}  // namespace opd::io
