// Recording (recording.hpp): the device-independent part; CUDA graphs in backend/cuda/graph.cpp.
#include "backend/recording.hpp"

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/device_access.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/graph.hpp"
#endif

namespace opd::backend {

namespace {

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("OPD_CUDA_GRAPHS");
    return !(v && std::string(v) == "0");
  }()};
  return on;
}
std::atomic<uint64_t> graph_launches{0};

}  // namespace

void Recording::set_enabled(bool on) { enabled_flag() = on; }
bool Recording::enabled() { return enabled_flag(); }
uint64_t Recording::launches() { return graph_launches; }

struct Recording::Impl {
  uint64_t key = 0;
  int64_t calls = 0;    // with this key
  bool failed = false;  // this key could not be recorded
#ifdef OPD_WITH_CUDA
  std::unique_ptr<cuda::Graph> graph;
#endif
#ifdef OPD_DEVICE_EMULATION
  std::vector<uintptr_t> captured;  // the older device memory the "capture" call touched
#endif
};

Recording::Recording() : impl_(std::make_unique<Impl>()) {}
Recording::~Recording() = default;
Recording::Recording(Recording&&) noexcept = default;
Recording& Recording::operator=(Recording&&) noexcept = default;

void Recording::reset() {
  if (!impl_) return;
  *impl_ = Impl{};
}

bool Recording::recorded() const {
#ifdef OPD_WITH_CUDA
  return impl_ && impl_->graph != nullptr;
#else
  return false;
#endif
}

void Recording::run(core::Device device, uint64_t key, const std::function<void()>& fn) {
  if (device != core::Device::Cuda || !enabled()) {
    fn();
    return;
  }
#ifdef OPD_WITH_CUDA
  Impl& m = *impl_;
  if (m.calls == 0 || key != m.key) {
    reset();
    m.key = key;
  }
  ++m.calls;
  if (m.graph) {
    m.graph->launch();
    ++graph_launches;
    return;
  }
  if (m.failed || m.calls < 2) {
    fn();
    return;
  }
  auto graph = std::make_unique<cuda::Graph>();
  std::string why;
  if (!graph->capture(fn, why)) {
    m.failed = true;
    core::log::warn("a decode step could not be recorded as a CUDA graph (", why,
                    "); it runs op by op");
    fn();
    return;
  }
  m.graph = std::move(graph);
  m.graph->launch();
  ++graph_launches;
#elif defined(OPD_DEVICE_EMULATION)
  // No graphs here, but their rule is checked: where a GPU would capture (the second call with
  // a key) and replay (the later ones), each call must touch the same device memory allocated
  // before it, since a replay reads and writes exactly what the capture did. (Memory allocated
  // within the call belongs to the graph.) A key that misses an input's address fails here.
  Impl& m = *impl_;
  if (m.calls == 0 || key != m.key) {
    reset();
    m.key = key;
  }
  if (++m.calls < 2) {
    fn();
    return;
  }
  std::vector<uintptr_t> touched;
  {
    const core::ReplayTrace trace;
    fn();
    touched = trace.touched();
  }
  if (m.calls == 2)
    m.captured = std::move(touched);
  else if (touched != m.captured)
    internal_error("recording",
                   "a recorded call touched other device memory than its capture did (" +
                       std::to_string(touched.size()) + " addresses, captured " +
                       std::to_string(m.captured.size()) +
                       "): a CUDA graph would replay stale addresses; the key must change with them");
#else
  fn();
#endif
}

}  // namespace opd::backend
