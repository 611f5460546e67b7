// GoogleTest main for every opd test executable: starts MPI when a launcher started the process
// (MPI worker tests, see mpi_worker.hpp) and the backend runtime (Kokkos) once.
#include <gtest/gtest.h>

#include "backend/ops.hpp"
#include "comm/mpi_runtime.hpp"

int main(int argc, char** argv) {
  opd::comm::MpiRuntime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  opd::backend::Runtime runtime;
  return RUN_ALL_TESTS();
}
