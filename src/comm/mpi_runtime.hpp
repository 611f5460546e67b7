// MPI start-up and shutdown for the opd binary, and the abort path that keeps a failure on one
// rank from hanging the others. MPI is started only when a launcher (mpirun, srun) started this
// process, so single-process runs on a laptop need no MPI daemon.
#pragma once

namespace opd::comm {

class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  bool active() const { return active_; }
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  bool active_ = false;
  int rank_ = 0, size_ = 1;
};

// Ranks in MPI_COMM_WORLD (1 when MPI was not started).
int world_size();
// This rank's index among the ranks on its node (MPI_Comm_split_type SHARED), and their
// number; 0 and 1 without MPI. Call it after MpiRuntime has started MPI: the first call is
// collective over the world (every rank calls it, e.g. at start-up to pick its GPU) and cached.
int local_rank();
int local_size();
// True when the environment shows an MPI launcher started this process.
bool launched_by_mpi();
// Ends every rank with `status` (MPI_Abort when MPI is active, else exit).
[[noreturn]] void abort_all(int status);

}  // namespace opd::comm
