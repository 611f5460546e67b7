#include "testing/mpi_worker.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace opd::testing {

bool in_mpi_worker() { return std::getenv("OPD_MPI_WORKER") != nullptr; }

ProcessResult run_mpi_workers(int ranks, const std::string& filter) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  return run_command(
      "OPD_MPI_WORKER=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OPENBLAS_NUM_THREADS=1 mpirun --oversubscribe -np " +
          std::to_string(ranks) + " '" + self + "' --gtest_color=no --gtest_filter='" + filter + "'",
      std::filesystem::current_path());
}

}  // namespace opd::testing
