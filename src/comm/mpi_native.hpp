// The MPI_Comm behind a Communicator, for libraries that take one directly (parallel HDF5).
// Kept apart from communicator.hpp so that only the files needing mpi.h include it.
#pragma once

#include <mpi.h>

#include "comm/communicator.hpp"

namespace opd::comm {

// MPI_COMM_SELF when MPI is not running (the one-rank communicator).
inline MPI_Comm mpi_comm(const Communicator& c) {
  const auto* p = static_cast<const MPI_Comm*>(c.native_handle());
  return p ? *p : MPI_COMM_SELF;
}

}  // namespace opd::comm
