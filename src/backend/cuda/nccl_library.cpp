#include "backend/cuda/nccl_library.hpp"

#include <dlfcn.h>
#include <glob.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "core/error.hpp"

namespace opd::backend::cuda {

namespace {

constexpr const char* kSoname = "libnccl.so.2";
constexpr const char* kFixHint =
    "set OPD_NCCL_LIBRARY to the path of libnccl.so.2: the CUDA toolkit's lib64/, or PyTorch's "
    "pip package nvidia-nccl-cu12 (python3 -c \"import nvidia.nccl, os; "
    "print(os.path.dirname(nvidia.nccl.__file__) + '/lib/libnccl.so.2')\")";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// Existing files matching `pattern`, sorted (glob's order), none when nothing matches.
std::vector<std::string> glob_files(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  return out;
}

template <class F>
bool resolve(void* handle, const char* name, F& fn, std::string& missing) {
  void* p = ::dlsym(handle, name);
  if (!p) {
    missing += missing.empty() ? name : std::string(", ") + name;
    return false;
  }
  fn = reinterpret_cast<F>(p);
  return true;
}

// Loads one candidate; null with `why` set when it is not a usable NCCL.
std::shared_ptr<NcclLibrary> open_one(const std::string& path, std::string& why) {
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = ::dlerror();
    why = e ? e : "dlopen failed";
    return nullptr;
  }
  auto lib = std::make_shared<NcclLibrary>();
  std::string missing;
  resolve(handle, "ncclGetVersion", lib->get_version, missing);
  resolve(handle, "ncclGetErrorString", lib->get_error_string, missing);
  resolve(handle, "ncclGetUniqueId", lib->get_unique_id, missing);
  resolve(handle, "ncclCommInitRank", lib->comm_init_rank, missing);
  resolve(handle, "ncclCommDestroy", lib->comm_destroy, missing);
  resolve(handle, "ncclCommAbort", lib->comm_abort, missing);
  resolve(handle, "ncclCommGetAsyncError", lib->comm_get_async_error, missing);
  resolve(handle, "ncclAllReduce", lib->all_reduce, missing);
  resolve(handle, "ncclBroadcast", lib->broadcast, missing);
  resolve(handle, "ncclAllGather", lib->all_gather, missing);
  resolve(handle, "ncclSend", lib->send, missing);
  resolve(handle, "ncclRecv", lib->recv, missing);
  resolve(handle, "ncclGroupStart", lib->group_start, missing);
  resolve(handle, "ncclGroupEnd", lib->group_end, missing);
  if (!missing.empty()) {
    why = "not a usable NCCL (no " + missing + "; NCCL >= 2.7 is needed)";
    ::dlclose(handle);
    return nullptr;
  }
  if (lib->get_version(&lib->version) != nccl_abi::kSuccess || lib->version <= 0) {
    why = "ncclGetVersion failed";
    ::dlclose(handle);
    return nullptr;
  }
  // Kept open for the life of the process: NCCL starts threads that must not lose their code.
  lib->path = path;
  return lib;
}

}  // namespace

std::string NcclLibrary::version_string() const {
  // NCCL_VERSION(X, Y, Z): X * 1000 + Y * 100 + Z up to 2.8, X * 10000 + Y * 100 + Z after.
  const int base = version < 10000 ? 1000 : 10000;
  std::ostringstream os;
  os << version / base << '.' << (version % base) / 100 << '.' << version % 100;
  return os.str();
}

std::string NcclLibrary::error_string(Result r) const {
  const char* s = get_error_string ? get_error_string(r) : nullptr;
  return s ? std::string(s) : "NCCL error " + std::to_string(r);
}

std::vector<std::string> nccl_candidates() {
  const std::string explicit_path = env("OPD_NCCL_LIBRARY");
  if (!explicit_path.empty()) return {explicit_path};
  std::vector<std::string> out = {kSoname};
  std::vector<std::string> prefixes;
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"})
    if (!env(var).empty()) prefixes.push_back(env(var) + "/lib");
  if (!env("HOME").empty()) prefixes.push_back(env("HOME") + "/.local/lib");
  prefixes.push_back("/usr/local/lib");
  prefixes.push_back("/usr/lib");
  for (const std::string& prefix : prefixes)
    for (const char* packages : {"site-packages", "dist-packages"})
      for (std::string& f : glob_files(prefix + "/python3*/" + packages +
                                       "/nvidia/nccl/lib/" + kSoname))
        out.push_back(std::move(f));
  return out;
}

std::shared_ptr<const NcclLibrary> load_nccl(const std::vector<std::string>& candidates) {
  std::string tried;
  for (const std::string& path : candidates) {
    std::string why;
    if (auto lib = open_one(path, why)) return lib;
    tried += "\n  " + path + ": " + why;
  }
  if (candidates.empty()) tried = " (no candidates)";
  throw Error(ErrorKind::Input,
              "NCCL (" + std::string(kSoname) +
                  ") is needed for collectives on CUDA tensors across ranks and was not found; "
                  "tried:" + tried,
              "nccl", kFixHint);
}

std::shared_ptr<const NcclLibrary> nccl() {
  static std::mutex mutex;
  static std::shared_ptr<const NcclLibrary> loaded;
  const std::lock_guard<std::mutex> lock(mutex);
  if (!loaded) loaded = load_nccl(nccl_candidates());
  return loaded;
}

}  // namespace opd::backend::cuda
