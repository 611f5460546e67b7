// NCCL, loaded at run time with dlopen: the library is ~200 MB, so opd neither links it nor
// ships it; GPU machines already have one (in the CUDA toolkit, or inside PyTorch's pip packages
// as nvidia/nccl/lib/libnccl.so.2). The few entry points opd uses are declared here from NCCL's
// documented C API, so the build needs no nccl.h.
//
// Search order (the first library that loads and has every symbol wins):
//   1. $OPD_NCCL_LIBRARY, when set: that file only (a wrong path is an error, not a fallback);
//   2. "libnccl.so.2" through the dynamic loader (LD_LIBRARY_PATH, the ldconfig cache, rpath);
//   3. Python packages: <prefix>/python3*/{site,dist}-packages/nvidia/nccl/lib/libnccl.so.2 for
//      the prefixes $VIRTUAL_ENV/lib, $CONDA_PREFIX/lib, ~/.local/lib, /usr/local/lib, /usr/lib.
// Not found is an opd::Error of kind Input whose hint names OPD_NCCL_LIBRARY.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace opd::backend::cuda {

// NCCL's C ABI. Enums are C ints; handles are opaque pointers; cudaStream_t is a pointer.
namespace nccl_abi {
using Result = int;
constexpr Result kSuccess = 0;
constexpr Result kInProgress = 7;
struct CommTag;  // ncclComm
using Comm = CommTag*;
constexpr int kUniqueIdBytes = 128;
struct UniqueId {  // ncclUniqueId: passed by value to ncclCommInitRank
  char internal[kUniqueIdBytes];
};
using DataType = int;  // ncclDataType_t
constexpr DataType kInt8 = 0, kFloat32 = 7, kBfloat16 = 9;
using RedOp = int;  // ncclRedOp_t
constexpr RedOp kSum = 0;
using Stream = void*;  // cudaStream_t
}  // namespace nccl_abi

struct NcclLibrary {
  using Result = nccl_abi::Result;
  using Comm = nccl_abi::Comm;
  using DataType = nccl_abi::DataType;
  using Stream = nccl_abi::Stream;

  std::string path;  // the file that was loaded
  int version = 0;   // ncclGetVersion's code: major * 10000 + minor * 100 + patch (>= 2.9)

  Result (*get_version)(int* version) = nullptr;
  const char* (*get_error_string)(Result result) = nullptr;
  Result (*get_unique_id)(nccl_abi::UniqueId* id) = nullptr;
  Result (*comm_init_rank)(Comm* comm, int nranks, nccl_abi::UniqueId id, int rank) = nullptr;
  Result (*comm_destroy)(Comm comm) = nullptr;
  Result (*comm_abort)(Comm comm) = nullptr;
  Result (*comm_get_async_error)(Comm comm, Result* async_error) = nullptr;
  Result (*all_reduce)(const void* send, void* recv, std::size_t count, DataType type,
                       nccl_abi::RedOp op, Comm comm, Stream stream) = nullptr;
  Result (*broadcast)(const void* send, void* recv, std::size_t count, DataType type, int root,
                      Comm comm, Stream stream) = nullptr;
  Result (*all_gather)(const void* send, void* recv, std::size_t send_count, DataType type,
                       Comm comm, Stream stream) = nullptr;
  Result (*send)(const void* data, std::size_t count, DataType type, int peer, Comm comm,
                 Stream stream) = nullptr;
  Result (*recv)(void* data, std::size_t count, DataType type, int peer, Comm comm,
                 Stream stream) = nullptr;
  Result (*group_start)() = nullptr;
  Result (*group_end)() = nullptr;

  std::string version_string() const;  // "2.28.3"
  std::string error_string(Result r) const;
};

// Where the library is looked for, in order (the list above, globs expanded; existing files
// only for the Python packages).
std::vector<std::string> nccl_candidates();
// Opens the first candidate that is a usable NCCL; every call searches again. Input error
// listing each candidate and why it failed when none is.
std::shared_ptr<const NcclLibrary> load_nccl(const std::vector<std::string>& candidates);
// The process's NCCL, loaded on first use from nccl_candidates() and kept loaded (a failure is
// not remembered: fixing OPD_NCCL_LIBRARY and calling again works). Holders keep it alive.
std::shared_ptr<const NcclLibrary> nccl();

}  // namespace opd::backend::cuda
