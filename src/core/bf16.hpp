// bfloat16 as raw bits (uint16_t): the upper half of an IEEE float32. Conversion from float
// rounds to nearest, ties to even (what cuBLAS, PyTorch and the CUDA intrinsics do), so the host
// and device casts agree bit for bit; NaN stays NaN (quiet) rather than rounding into infinity.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define OPD_HOST_DEVICE __host__ __device__
#else
#define OPD_HOST_DEVICE
#endif

namespace opd::core {

OPD_HOST_DEVICE inline uint16_t float_to_bf16(float f) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, sizeof u);
#endif
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN: keep the sign, force quiet
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry into the
  // exponent is the correct rounding up (and overflow to infinity is IEEE's too).
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

OPD_HOST_DEVICE inline float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

}  // namespace opd::core
