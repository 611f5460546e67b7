// io/safetensors_dtype.hpp: the 16-bit float formats of model files (IEEE binary16 "F16" and
// bfloat16 "BF16") to and from float32. Widening is exact; narrowing rounds to nearest, ties to
// even, so a value that came from the narrow format goes back to the very same bits, NaN payloads
// and signs included (a round trip F16 -> F32 -> F16 is the identity on all 65536 patterns).
#pragma once

#include <cstddef>
#include <cstdint>

namespace opd::io::safetensors {

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
// Unlike core::float_to_bf16 (which quiets every NaN, as the GPU casts do), a NaN keeps its
// payload's upper bits, so signalling NaNs read from a file are written back unchanged.
uint16_t f32_to_bf16(float f);

}  // namespace opd::io::safetensors
