// Backend runtime: Kokkos start/stop and the OpenBLAS thread count.
#include <Kokkos_Core.hpp>

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

bool use_cuda_device(int index) {
#ifdef OPD_WITH_CUDA
  return cuda::activate(index);
#else
  (void)index;
  return false;
#endif
}

std::string cuda_device_name() {
#ifdef OPD_WITH_CUDA
  return cuda::device_name();
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
