// Device emulation (a test build: cmake -DOPD_DEVICE_EMULATION=ON, without the CUDA backend).
// "CUDA" tensors then live in host memory and every CUDA op runs the CPU kernel on them, so the
// code above the op set (model, parallel, distill, app) runs its device = "cuda" paths on a
// machine without a GPU: the same jobs, layouts and collectives, with CPU numerics.
//
// What it checks is what a GPU would:
//  - host code never reads or writes device memory directly. Tensor::raw() of a Cuda tensor is
//    an error unless a DeviceAccess is open, which only the backend's op dispatch and the
//    emulated device collectives open, for the span of one op. A missing copy to the host fails
//    here with the tensor named, instead of as an illegal address on the first GPU run;
//  - a CUDA op that needs its tensors on the device (the dense ops: a strict access) is given
//    no host tensor: raw() of a host tensor made before the op is then an error too, as the CUDA
//    op's own device check would be. (The distillation ops stage small host inputs, as their CUDA
//    versions do.)
// In other builds DeviceAccess is an empty object.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace opd::core {

class DeviceAccess {
 public:
  // `open`: whether this op really touches device memory (a host op opens nothing); `strict`:
  // whether it takes device tensors only.
  explicit DeviceAccess(bool open = true, bool strict = false);
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;

 private:
  bool open_, strict_;
};

// The error of a host access to device memory outside an op (a function of its own, so that a
// debugger can stop there: break opd::core::device_access_violation).
// `host`: a host tensor given to a strict op.
[[noreturn]] void device_access_violation(const std::string& tensor, bool host);

// Whether a DeviceAccess is open now (in any thread: the CPU kernels run on worker threads),
// and whether a strict one is.
bool device_access_open();
bool device_access_strict();

// A CUDA graph replays the memory its capture touched. ReplayTrace collects, while it lives,
// the addresses of the device memory touched that was allocated before it began (memory
// allocated during a capture belongs to the graph and is the same at every replay), so that two
// calls of a recorded function can be compared (backend/recording.cpp). One at a time.
class ReplayTrace {
 public:
  ReplayTrace();
  ~ReplayTrace();
  ReplayTrace(const ReplayTrace&) = delete;
  ReplayTrace& operator=(const ReplayTrace&) = delete;
  // The addresses touched so far, in ascending order.
  std::vector<uintptr_t> touched() const;

 private:
  uint64_t first_serial_;
};
uint64_t next_storage_serial();
void trace_device_access(uint64_t serial, const void* p);

// Whether this is a device-emulation build (tests use it to skip what only real GPUs do, such
// as CUDA graphs).
constexpr bool kDeviceEmulation =
#ifdef OPD_DEVICE_EMULATION
    true;
#else
    false;
#endif

}  // namespace opd::core
