// Tests of the parallel CheckpointWriter (one HDF5 file written collectively by every rank of a
// communicator, each rank its hyperslab) and of reading it back at any layout: by every rank
// at once, at another number of ranks, and serially.
//
// Each driver test (CheckpointParallel.*) runs a worker test (CheckpointParallelWorker.*) under
// mpirun; the driver makes a temporary directory, hands it to the workers in the environment
// variable OPD_CKPT_PAR_DIR, and checks the published file serially afterwards.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/checkpoint.hpp"
#include "io/checksum.hpp"
#include "io/io_test_util.hpp"
#include "testing/mpi_worker.hpp"

namespace opd::io {
namespace {

namespace fs = std::filesystem;
using core::DType;
using core::Shape;
using core::Tensor;
using testing::TempDir;

constexpr const char* kDirVar = "OPD_CKPT_PAR_DIR";

// ---- deterministic content ------------------------------------------------------------------

float rows_value(int64_t r, int64_t c) { return 0.5f * static_cast<float>(r * 6 + c) - 7.25f; }
float cols_value(int64_t r, int64_t c) { return -1.5f * static_cast<float>(r) + 0.125f * c; }
float norm_value(int64_t i) { return 1.0f + 0.0625f * static_cast<float>(i); }
int32_t ids_value(int64_t r, int64_t c) { return static_cast<int32_t>(1000 * r - 7 * c); }
float only0_value(int64_t r, int64_t c) { return static_cast<float>(r * 4 + c) + 0.5f; }
float overlap_value(int64_t r, int64_t c) { return 3.0f * r - 0.75f * c; }
uint16_t half_value(int64_t r, int64_t c) { return static_cast<uint16_t>(0x3f80 + 16 * r + c); }
float resharded_value(int64_t r, int64_t c) { return 0.001f * static_cast<float>(r * 6 + c) + 2; }

const char* kToml = "[run]\nname = \"parallel\"\n";

// The global [rows, cols] tensor of `f`.
template <class T, class F>
Tensor global_of(const Shape& shape, F f, DType dt) {
  Tensor t = Tensor::empty(shape, dt);
  for (int64_t r = 0; r < shape[0]; ++r)
    for (int64_t c = 0; c < shape[1]; ++c) t.data<T>()[r * shape[1] + c] = f(r, c);
  return t;
}

// The block [r0, r0 + nr) x [c0, c0 + nc) of `f`.
template <class T, class F>
Tensor block_of(int64_t r0, int64_t nr, int64_t c0, int64_t nc, F f, DType dt) {
  Tensor t = Tensor::empty({nr, nc}, dt);
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t c = 0; c < nc; ++c) t.data<T>()[r * nc + c] = f(r0 + r, c0 + c);
  return t;
}

// Rank `rank` of `size` gets [lo, hi) of n (uneven splits allowed).
std::pair<int64_t, int64_t> split(int64_t n, int rank, int size) {
  return {n * rank / size, n * (rank + 1) / size};
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

std::string dir_from_env() {
  const char* d = std::getenv(kDirVar);
  return d ? d : "";
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// True when every rank passed the same text (e.g. the same error message).
bool same_on_every_rank(const std::string& text) {
  uint64_t h = fnv1a64(text.data(), text.size());
  std::vector<uint64_t> all(static_cast<std::size_t>(world_size()));
  MPI_Allgather(&h, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  for (uint64_t x : all)
    if (x != h) return false;
  return true;
}

// ---- test 1: every kind of block, written by np ranks ------------------------------------------

// Writes the full content with every rank of `comm` (rank/size from it).
void write_everything(const std::string& path, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  CheckpointWriter w(path, comm);
  // Rows split across ranks.
  auto [r0, r1] = split(12, rank, size);
  w.write_tensor("model/rows", block_of<float>(r0, r1 - r0, 0, 6, rows_value, DType::F32), {12, 6},
                 {r0, 0});
  // Columns split (unevenly at np 4: 1, 2, 1, 2 columns).
  auto [c0, c1] = split(6, rank, size);
  w.write_tensor("model/cols", block_of<float>(0, 12, c0, c1 - c0, cols_value, DType::F32), {12, 6},
                 {0, c0});
  // Replicated: every rank writes the whole (global shape and offset by default).
  Tensor norm = Tensor::empty({6}, DType::F32);
  for (int64_t i = 0; i < 6; ++i) norm.data<float>()[i] = norm_value(i);
  w.write_tensor("model/norm", norm);
  Tensor scale = Tensor::empty({}, DType::F32);  // a 0-d tensor, replicated too
  scale.data<float>()[0] = 0.75f;
  w.write_tensor("model/scale", scale);
  // I32, rows split unevenly, written in two calls per rank (two halves of each rank's rows).
  auto [i0, i1] = split(5, rank, size);
  int64_t mid = (i0 + i1) / 2;
  w.write_tensor("model/ids", block_of<int32_t>(i0, mid - i0, 0, 7, ids_value, DType::I32), {5, 7},
                 {i0, 0});
  w.write_tensor("model/ids", block_of<int32_t>(mid, i1 - mid, 0, 7, ids_value, DType::I32), {5, 7},
                 {mid, 0});
  // Held by rank 0 alone: the others pass an empty block.
  if (rank == 0)
    w.write_tensor("model/only0", block_of<float>(0, 3, 0, 4, only0_value, DType::F32), {3, 4});
  else
    w.write_tensor("model/only0", Tensor::empty({0, 4}, DType::F32), {3, 4});
  // Overlapping row blocks (each rank also writes the last row of the previous rank's share):
  // identical data where they overlap.
  int64_t o0 = std::max<int64_t>(0, r0 - 1);
  w.write_tensor("model/overlap", block_of<float>(o0, r1 - o0, 0, 6, overlap_value, DType::F32),
                 {12, 6}, {o0, 0});
  // BF16 split by columns over ranks 0 and 1 (whole on a single rank); the others pass an
  // empty block of another shape.
  if (size == 1)
    w.write_tensor("model/half", block_of<uint16_t>(0, 4, 0, 4, half_value, DType::BF16));
  else if (rank < 2)
    w.write_tensor("model/half", block_of<uint16_t>(0, 4, 2 * rank, 2, half_value, DType::BF16),
                   {4, 4}, {0, 2 * rank});
  else
    w.write_tensor("model/half", Tensor::empty({0}, DType::BF16), {4, 4});
  w.write_string("config/job_toml", kToml);
  w.write_string("config/empty", "");
  w.write_int("state/step", 120);
  w.write_double("state/lr", 3.0e-4);
  w.write_ints("state/cursor", {7, -8, 9});
  w.write_u64s("state/rng", {0xdeadbeefcafef00dULL, 42});
  w.set_attribute("layout", "tp=" + std::to_string(size));
  w.set_attribute("ranks", static_cast<int64_t>(size));

  // Nothing is published before commit (checked on every rank).
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::exists(path + ".tmp"));
  w.commit();
  EXPECT_TRUE(w.committed());
  // commit returns only once the file is published: no rank sees it missing.
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

// Reads everything back whole (checksums verified) and compares with the reference.
void check_everything(const std::string& path, int writers) {
  CheckpointReader r(path);
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/rows"), global_of<float>({12, 6}, rows_value, DType::F32)));
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/cols"), global_of<float>({12, 6}, cols_value, DType::F32)));
  std::vector<float> norm(6);
  for (int64_t i = 0; i < 6; ++i) norm[static_cast<std::size_t>(i)] = norm_value(i);
  EXPECT_EQ(r.read_tensor("model/norm").to_vector(), norm);
  Tensor scale = r.read_tensor("model/scale");
  EXPECT_EQ(scale.shape(), Shape{});
  EXPECT_EQ(scale.to_vector(), std::vector<float>{0.75f});
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/ids"), global_of<int32_t>({5, 7}, ids_value, DType::I32)));
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/only0"), global_of<float>({3, 4}, only0_value, DType::F32)));
  EXPECT_TRUE(same_bytes(r.read_tensor("model/overlap"),
                         global_of<float>({12, 6}, overlap_value, DType::F32)));
  EXPECT_TRUE(same_bytes(r.read_tensor("model/half"),
                         global_of<uint16_t>({4, 4}, half_value, DType::BF16)));
  EXPECT_EQ(r.info("model/half").type, StoredType::BF16);
  EXPECT_EQ(r.read_string("config/job_toml"), kToml);
  EXPECT_EQ(r.read_string("config/empty"), "");
  EXPECT_EQ(r.read_int("state/step"), 120);
  EXPECT_EQ(r.read_double("state/lr"), 3.0e-4);
  EXPECT_EQ(r.read_ints("state/cursor"), (std::vector<int64_t>{7, -8, 9}));
  EXPECT_EQ(r.read_u64s("state/rng"), (std::vector<uint64_t>{0xdeadbeefcafef00dULL, 42}));
  EXPECT_EQ(r.attribute_string("layout"), "tp=" + std::to_string(writers));
  EXPECT_EQ(r.attribute_int("ranks"), writers);
  EXPECT_EQ(r.attribute_string("format"), kCheckpointFormat);
  auto list = r.list();
  EXPECT_EQ(list.size(), 14u);
  for (const auto& info : list) EXPECT_NO_THROW(r.verify(info.name)) << info.name;
}

TEST(CheckpointParallelWorker, WriteAndReadBack) {
  OPD_MPI_WORKER_ONLY();
  const std::string dir = dir_from_env();
  ASSERT_FALSE(dir.empty());
  const int rank = world_rank(), size = world_size();
  const std::string path = dir + "/ckpt/step_00000001.h5";  // the parent is created
  write_everything(path, MPI_COMM_WORLD);
  // Every rank reads the published file at once (concurrent read-only opens), whole and its
  // own blocks.
  check_everything(path, size);
  CheckpointReader r(path);
  auto [r0, r1] = split(12, rank, size);
  EXPECT_TRUE(same_bytes(r.read_block("model/rows", {r0, 0}, {r1 - r0, 6}),
                         block_of<float>(r0, r1 - r0, 0, 6, rows_value, DType::F32)));
  auto [c0, c1] = split(6, rank, size);
  Tensor dst = Tensor::zeros({12, c1 - c0}, DType::F32);
  r.read_tensor_into("model/cols", dst, {0, c0});
  EXPECT_TRUE(same_bytes(dst, block_of<float>(0, 12, c0, c1 - c0, cols_value, DType::F32)));

  // A communicator of one rank writes serially: each rank its own file.
  const std::string own = dir + "/self/rank" + std::to_string(rank) + ".h5";
  write_everything(own, MPI_COMM_SELF);
  check_everything(own, 1);
  MPI_Barrier(MPI_COMM_WORLD);
}

class CheckpointParallel : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv(kDirVar, dir_.path().c_str(), 1); }
  void TearDown() override { ::unsetenv(kDirVar); }
  TempDir dir_;
};

TEST_F(CheckpointParallel, RowsColsReplicatedScalarsAtNp2) {
  EXPECT_MPI_WORKERS_PASS(2, "CheckpointParallelWorker.WriteAndReadBack");
  // Read serially after the job: the published file only, nothing left over.
  check_everything(dir_ / "ckpt/step_00000001.h5", 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "ckpt"), fs::directory_iterator()), 1);
}

TEST_F(CheckpointParallel, RowsColsReplicatedScalarsAtNp4) {
  EXPECT_MPI_WORKERS_PASS(4, "CheckpointParallelWorker.WriteAndReadBack");
  check_everything(dir_ / "ckpt/step_00000001.h5", 4);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "ckpt"), fs::directory_iterator()), 1);
  // The parallel file and a serial one of the same content carry the same checksums.
  CheckpointReader par(dir_ / "ckpt/step_00000001.h5"), ser(dir_ / "self/rank0.h5");
  for (const auto& info : par.list()) {
    EXPECT_TRUE(ser.has(info.name)) << info.name;
    if (info.is_tensor)
      EXPECT_TRUE(same_bytes(par.read_tensor(info.name), ser.read_tensor(info.name))) << info.name;
  }
}

// ---- test 2: blocks that leave a gap fail the commit on every rank --------------------------

TEST(CheckpointParallelWorker, GapFailsCommit) {
  OPD_MPI_WORKER_ONLY();
  const std::string dir = dir_from_env();
  ASSERT_FALSE(dir.empty());
  const int rank = world_rank(), size = world_size();
  const std::string path = dir + "/step_00000002.h5";
  std::string what;
  {
    CheckpointWriter w(path, MPI_COMM_WORLD);
    w.write_tensor("model/whole", block_of<float>(0, 2, 0, 2, rows_value, DType::F32));
    // Rows of [8, 4] split across ranks, but the last rank leaves out its last row.
    auto [r0, r1] = split(8, rank, size);
    if (rank == size - 1) --r1;
    w.write_tensor("model/gap", block_of<float>(r0, r1 - r0, 0, 4, rows_value, DType::F32), {8, 4},
                   {r0, 0});
    try {
      w.commit();
      ADD_FAILURE() << "commit accepted a dataset with a missing row";
    } catch (const Error& e) {
      what = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Internal);
      EXPECT_NE(what.find("dataset 'model/gap' blocks cover 28 of 32 elements"), std::string::npos)
          << what;
    }
    EXPECT_FALSE(w.committed());
    // The writer is dead on every rank: a further call fails at once (no collective, no hang).
    EXPECT_THROW(w.commit(), Error);
    EXPECT_THROW(w.write_int("state/step", 1), Error);
  }
  EXPECT_TRUE(same_on_every_rank(what)) << what;
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0's destructor removed the .tmp
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(CheckpointParallel, GapFailsCommitOnEveryRankAtNp2) {
  EXPECT_MPI_WORKERS_PASS(2, "CheckpointParallelWorker.GapFailsCommit");
  EXPECT_TRUE(fs::is_empty(dir_.path()));
}

TEST_F(CheckpointParallel, GapFailsCommitOnEveryRankAtNp4) {
  EXPECT_MPI_WORKERS_PASS(4, "CheckpointParallelWorker.GapFailsCommit");
  EXPECT_TRUE(fs::is_empty(dir_.path()));
}

// ---- bad calls: a bad block on one rank, ranks that disagree, an abandoned writer ----------

TEST(CheckpointParallelWorker, BadCallsFailOnEveryRank) {
  OPD_MPI_WORKER_ONLY();
  const std::string dir = dir_from_env();
  ASSERT_FALSE(dir.empty());
  const int rank = world_rank(), size = world_size();
  ASSERT_GE(size, 2);

  // A block outside the global shape on the last rank only: every rank throws its error.
  const std::string p1 = dir + "/step_00000003.h5";
  std::string what;
  {
    CheckpointWriter w(p1, MPI_COMM_WORLD);
    int64_t r0 = rank == size - 1 ? 7 : rank;  // rows [7, 9) of 8 on the last rank
    int64_t nr = rank == size - 1 ? 2 : 1;
    try {
      w.write_tensor("model/x", block_of<float>(r0, nr, 0, 4, rows_value, DType::F32), {8, 4},
                     {r0, 0});
      ADD_FAILURE() << "a block outside the dataset was accepted";
    } catch (const Error& e) {
      what = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Internal);
      EXPECT_NE(what.find("outside [8, 4]"), std::string::npos) << what;
    }
    EXPECT_THROW(w.commit(), Error);  // dead on every rank
  }
  EXPECT_TRUE(same_on_every_rank(what)) << what;

  // Ranks calling with different names: every rank throws, naming both calls.
  const std::string p2 = dir + "/step_00000004.h5";
  what.clear();
  {
    CheckpointWriter w(p2, MPI_COMM_WORLD);
    w.write_int("state/step", 5);
    try {
      w.write_int(rank == 1 ? "state/stepp" : "state/step2", 6);
      ADD_FAILURE() << "different names were accepted";
    } catch (const Error& e) {
      what = e.what();
      EXPECT_NE(what.find("different collective calls"), std::string::npos) << what;
      EXPECT_NE(what.find("rank 1: write_int 'state/stepp'"), std::string::npos) << what;
    }
  }
  EXPECT_TRUE(same_on_every_rank(what)) << what;

  // Ranks writing different values of a replicated scalar: refused too.
  const std::string p3 = dir + "/step_00000005.h5";
  {
    CheckpointWriter w(p3, MPI_COMM_WORLD);
    EXPECT_THROW(w.write_int("state/step", rank), Error);
  }

  // Destroyed without commit (and without a failure): no collective in the destructor, the
  // .tmp is removed; HDF5 closes the abandoned file at MPI_Finalize.
  const std::string p4 = dir + "/step_00000006.h5";
  {
    CheckpointWriter w(p4, MPI_COMM_WORLD);
    auto [r0, r1] = split(8, rank, size);
    w.write_tensor("model/x", block_of<float>(r0, r1 - r0, 0, 4, rows_value, DType::F32), {8, 4},
                   {r0, 0});
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (const auto& p : {p1, p2, p3, p4}) {
    EXPECT_FALSE(fs::exists(p)) << p;
    EXPECT_FALSE(fs::exists(p + ".tmp")) << p;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_F(CheckpointParallel, BadCallsFailOnEveryRankAtNp3) {
  EXPECT_MPI_WORKERS_PASS(3, "CheckpointParallelWorker.BadCallsFailOnEveryRank");
  EXPECT_TRUE(fs::is_empty(dir_.path()));
}

// ---- test 3: written in 4 row blocks, read at 2 ranks and at 1 -----------------------------

TEST(CheckpointParallelWorker, Rows4) {
  OPD_MPI_WORKER_ONLY();
  const std::string dir = dir_from_env();
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(world_size(), 4);
  const int rank = world_rank();
  CheckpointWriter w(dir + "/step_00000010.h5", MPI_COMM_WORLD);
  w.write_tensor("model/w", block_of<float>(3 * rank, 3, 0, 6, resharded_value, DType::F32),
                 {12, 6}, {3 * rank, 0});
  w.write_int("state/step", 10);
  w.commit();
}

TEST(CheckpointParallelWorker, Read2BlocksPerRank) {
  OPD_MPI_WORKER_ONLY();
  const std::string dir = dir_from_env();
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(world_size(), 2);
  const int rank = world_rank();
  CheckpointReader r(dir + "/step_00000010.h5");
  // Rank r holds rows [6r, 6r + 6) as two blocks of 3 rows: one by read_block, one by
  // read_tensor_into at an offset.
  EXPECT_TRUE(same_bytes(r.read_block("model/w", {6 * rank, 0}, {3, 6}),
                         block_of<float>(6 * rank, 3, 0, 6, resharded_value, DType::F32)));
  Tensor second = Tensor::zeros({3, 6}, DType::F32);
  r.read_tensor_into("model/w", second, {6 * rank + 3, 0});
  EXPECT_TRUE(
      same_bytes(second, block_of<float>(6 * rank + 3, 3, 0, 6, resharded_value, DType::F32)));
  // And a column half of every row: another layout again.
  EXPECT_TRUE(same_bytes(r.read_block("model/w", {0, 3 * rank}, {12, 3}),
                         block_of<float>(0, 12, 3 * rank, 3, resharded_value, DType::F32)));
  EXPECT_NO_THROW(r.verify("model/w"));
  EXPECT_EQ(r.read_int("state/step"), 10);
}

TEST_F(CheckpointParallel, WrittenAt4ReadAt2AndAt1) {
  EXPECT_MPI_WORKERS_PASS(4, "CheckpointParallelWorker.Rows4");
  EXPECT_MPI_WORKERS_PASS(2, "CheckpointParallelWorker.Read2BlocksPerRank");
  CheckpointReader r(dir_ / "step_00000010.h5");
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/w"), global_of<float>({12, 6}, resharded_value, DType::F32)));
  EXPECT_EQ(r.read_int("state/step"), 10);
}

// ---- coverage semantics, serially (the same code decides in parallel) -------------------------

TEST(CheckpointCoverage, OverlappingBlocksCountTheirUnion) {
  TempDir dir;
  const std::string path = dir / "step_00000020.h5";
  {
    CheckpointWriter w(path);
    // [12, 6] as rows [0, 7) and [5, 12): rows 5 and 6 written twice, with the same data.
    w.write_tensor("model/w", block_of<float>(0, 7, 0, 6, rows_value, DType::F32), {12, 6}, {0, 0});
    w.write_tensor("model/w", block_of<float>(5, 7, 0, 6, rows_value, DType::F32), {12, 6}, {5, 0});
    // [4, 4]: the same top-left block twice (replicated), then the rest in two blocks.
    for (int i = 0; i < 2; ++i)
      w.write_tensor("model/g", block_of<float>(0, 2, 0, 2, cols_value, DType::F32), {4, 4});
    w.write_tensor("model/g", block_of<float>(0, 4, 2, 2, cols_value, DType::F32), {4, 4}, {0, 2});
    w.write_tensor("model/g", block_of<float>(2, 2, 0, 4, cols_value, DType::F32), {4, 4}, {2, 0});
    w.commit();
  }
  CheckpointReader r(path);
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/w"), global_of<float>({12, 6}, rows_value, DType::F32)));
  EXPECT_TRUE(
      same_bytes(r.read_tensor("model/g"), global_of<float>({4, 4}, cols_value, DType::F32)));
}

TEST(CheckpointCoverage, AHoleInsideOverlappingBlocksIsCounted) {
  TempDir dir;
  const std::string path = dir / "step_00000021.h5";
  {
    CheckpointWriter w(path);
    // [4, 4] with the block rows [2, 4) x cols [0, 2) never written; others twice.
    for (int i = 0; i < 2; ++i) {
      w.write_tensor("model/g", block_of<float>(0, 2, 0, 4, cols_value, DType::F32), {4, 4});
      w.write_tensor("model/g", block_of<float>(1, 3, 2, 2, cols_value, DType::F32), {4, 4},
                     {1, 2});
    }
    try {
      w.commit();
      FAIL() << "commit accepted a dataset with a hole";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Internal);
      EXPECT_NE(std::string(e.what()).find("'model/g' blocks cover 12 of 16 elements"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

}  // namespace
}  // namespace opd::io
