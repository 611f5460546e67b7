// MPI tests inside a GoogleTest executable: a driver test relaunches this same executable under
// `mpirun -np N` with OPD_MPI_WORKER=1 and a filter naming its worker test; the worker runs on
// every rank (and skips when not under the driver), and the driver checks that all ranks passed.
//
//   TEST(Foo, Tp2MatchesOneRank) { expect_mpi_workers_pass(2, "FooWorker.Tp2"); }
//   TEST(FooWorker, Tp2) { OPD_MPI_WORKER_ONLY(); ... per-rank checks ... }
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "testing/process.hpp"

namespace opd::testing {

// True in a process started by run_mpi_workers.
bool in_mpi_worker();
// Runs this executable under mpirun with `ranks` ranks, running only the tests matching `filter`.
ProcessResult run_mpi_workers(int ranks, const std::string& filter);

}  // namespace opd::testing

#define OPD_MPI_WORKER_ONLY()                                               \
  do {                                                                      \
    if (!::opd::testing::in_mpi_worker()) GTEST_SKIP() << "MPI worker test"; \
  } while (0)

// Fails the calling test unless every rank of the worker run passed.
#define EXPECT_MPI_WORKERS_PASS(ranks, filter)                                        \
  do {                                                                                \
    const auto _r = ::opd::testing::run_mpi_workers(ranks, filter);                   \
    EXPECT_EQ(_r.status, 0) << _r.out << _r.err;                                      \
    EXPECT_EQ(_r.out.find("[  SKIPPED ]"), std::string::npos) << _r.out;              \
    EXPECT_NE(_r.out.find("[  PASSED  ] 1 test"), std::string::npos) << _r.out;       \
  } while (0)
