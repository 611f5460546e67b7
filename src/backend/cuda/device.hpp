// CUDA device discovery, activation (registers the device allocator) and host<->device copies.
#pragma once

#include <cstddef>
#include <string>

namespace opd::backend::cuda {

int device_count();              // 0 when no driver or no device
bool activate(int device);       // false when the device is absent
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
void synchronize();
std::string device_name();     // of the active device ("" when none)

}  // namespace opd::backend::cuda
