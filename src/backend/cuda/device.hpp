// CUDA device discovery, activation (registers the device allocator) and host<->device copies.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace opd::backend::cuda {

int device_count();              // 0 when no driver or no device
bool activate(int device);       // false when the device is absent
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
void synchronize();
std::string device_name();     // of the active device ("" when none)

// Device memory owned by a recorded graph (graph.cpp). While a pool is active on the calling
// thread every device allocation comes from it; a block it handed out goes back to it when
// freed, even after the recording ended, so that no later tensor is given memory a replay of the
// graph writes. Its blocks return to the allocator when the pool is destroyed, which waits for
// the device first.
class GraphPool {
 public:
  GraphPool() = default;
  GraphPool(const GraphPool&) = delete;
  GraphPool& operator=(const GraphPool&) = delete;
  ~GraphPool();
  // Makes this pool the calling thread's allocator until deactivate().
  void activate();
  void deactivate();

 private:
  friend struct PoolBlocks;
  std::multimap<std::size_t, void*> free_;  // rounded size -> block handed back
  std::vector<void*> blocks_;               // every block it handed out
};

}  // namespace opd::backend::cuda
