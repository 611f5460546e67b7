#include "core/device_access.hpp"

#include <atomic>
#include <mutex>
#include <set>

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

namespace {
std::atomic<uint64_t> g_serial{0};
struct Trace {
  std::mutex lock;  // the CPU kernels' worker threads touch memory too
  bool on = false;
  uint64_t first_serial = 0;
  std::set<uintptr_t> touched;
};
Trace& trace() {
  static Trace t;
  return t;
}
}  // namespace

uint64_t next_storage_serial() { return ++g_serial; }

void trace_device_access(uint64_t serial, const void* p) {
  Trace& t = trace();
  std::lock_guard<std::mutex> hold(t.lock);
  if (t.on && serial < t.first_serial) t.touched.insert(reinterpret_cast<uintptr_t>(p));
}

ReplayTrace::ReplayTrace() : first_serial_(g_serial.load() + 1) {
  Trace& t = trace();
  std::lock_guard<std::mutex> hold(t.lock);
  OPD_CHECK(!t.on, "replay traces do not nest");
  t.on = true;
  t.first_serial = first_serial_;
  t.touched.clear();
}

ReplayTrace::~ReplayTrace() {
  Trace& t = trace();
  std::lock_guard<std::mutex> hold(t.lock);
  t.on = false;
}

std::vector<uintptr_t> ReplayTrace::touched() const {
  Trace& t = trace();
  std::lock_guard<std::mutex> hold(t.lock);
  return {t.touched.begin(), t.touched.end()};
}

bool device_access_open() { return g_open.load(std::memory_order_relaxed) > 0; }
bool device_access_strict() { return g_strict.load(std::memory_order_relaxed) > 0; }

}  // namespace opd::core
