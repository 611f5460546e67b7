#include "core/device_access.hpp"

#include <atomic>

#include "core/error.hpp"

namespace opd::core {

namespace {
// Counts, not flags: ops nest (an op may call others), and the CPU kernels' worker threads must
// see the access their caller opened.
std::atomic<int> g_open{0}, g_strict{0};
}  // namespace

DeviceAccess::DeviceAccess(bool open, bool strict)
    : open_(open && kDeviceEmulation), strict_(open_ && strict) {
  if (open_) g_open.fetch_add(1, std::memory_order_relaxed);
  if (strict_) g_strict.fetch_add(1, std::memory_order_relaxed);
}

DeviceAccess::~DeviceAccess() {
  if (open_) g_open.fetch_sub(1, std::memory_order_relaxed);
  if (strict_) g_strict.fetch_sub(1, std::memory_order_relaxed);
}

void device_access_violation(const std::string& tensor, bool host) {
  if (host)
    throw Error(ErrorKind::Internal,
                "the host tensor " + tensor +
                    " was given to a CUDA op that takes device tensors only (on a GPU its device "
                    "check fails): move it with backend::on_device first",
                "device emulation");
  throw Error(ErrorKind::Internal,
              "host code touched the device memory of " + tensor +
                  " (a GPU would fault here): copy it to the host first (backend::on_device)",
              "device emulation");
}

bool device_access_open() { return g_open.load(std::memory_order_relaxed) > 0; }
bool device_access_strict() { return g_strict.load(std::memory_order_relaxed) > 0; }

}  // namespace opd::core
