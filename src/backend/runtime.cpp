// Backend runtime: Kokkos start/stop and the OpenBLAS thread count.
#include <Kokkos_Core.hpp>

#include <cstring>
#include <new>

#include "backend/device_comm.hpp"
#include "backend/ops.hpp"

#ifdef OPD_WITH_CUDA
#include "backend/cuda/device.hpp"
#endif

extern "C" {
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
}

namespace opd::backend {

namespace {
bool g_owns_kokkos = false;  // Kokkos 3.4 has no is_finalized(): remember who started it
}

Runtime::Runtime() {
  if (!Kokkos::is_initialized()) {
    Kokkos::initialize();
    g_owns_kokkos = true;
  }
}

Runtime::~Runtime() {
  if (g_owns_kokkos && Kokkos::is_initialized()) Kokkos::finalize();
  g_owns_kokkos = false;
}

void set_blas_threads(int n) {
  if (n > 0) openblas_set_num_threads(n);
}

int blas_threads() { return openblas_get_num_threads(); }

#ifdef OPD_DEVICE_EMULATION
namespace {
// Emulated device memory: host memory filled with 0xff bytes (NaN in f32 and bf16, -1 in
// integers), as a GPU's fresh allocation holds whatever was there before: a read of memory that
// no op wrote shows up in the results instead of reading as zeros.
void* emulated_alloc(std::size_t bytes) {
  void* p = ::operator new(bytes, std::align_val_t(256));
  std::memset(p, 0xff, bytes);
  return p;
}
void emulated_free(void* p) { ::operator delete(p, std::align_val_t(256)); }
}  // namespace
#endif

bool use_cuda_device(int index) {
#ifdef OPD_WITH_CUDA
  return cuda::activate(index);
#elif defined(OPD_DEVICE_EMULATION)
  if (index < 0 || index >= kEmulatedDevices) return false;
  core::register_device_allocator(core::Device::Cuda, {emulated_alloc, emulated_free});
  return true;
#else
  (void)index;
  return false;
#endif
}

std::string cuda_device_name() {
#ifdef OPD_WITH_CUDA
  return cuda::device_name();
#elif defined(OPD_DEVICE_EMULATION)
  return "emulated CUDA device (host memory, CPU kernels)";
#else
  return "";
#endif
}

void synchronize(core::Device device) {
#ifdef OPD_WITH_CUDA
  if (device == core::Device::Cuda) cuda::synchronize();
#else
  (void)device;
#endif
}

}  // namespace opd::backend
