// The generated Unicode tables (from unicode_tables_gen.py): code point properties
// (unicode_props_tables.cpp); combining classes, canonical decompositions and compositions
// (unicode_nfc_tables.cpp). Read them through unicode_props.hpp and unicode_nfc.hpp, not directly.
#pragma once

#include <cstddef>
#include <cstdint>

namespace opd::data::unicode_tables {

struct Decomposition {
  uint32_t cp, first, second;  // second == 0: a singleton decomposition
};
struct Composition {
  uint32_t first, second, composite;
};

extern const uint32_t kPropStart[];
extern const uint8_t kPropValue[];
extern const std::size_t kPropStart_size, kPropValue_size;
extern const uint32_t kCccStart[];
extern const uint8_t kCccValue[];
extern const std::size_t kCccStart_size, kCccValue_size;
extern const Decomposition kDecomp[];
extern const std::size_t kDecomp_size;
extern const Composition kCompose[];
extern const std::size_t kCompose_size;

}  // namespace opd::data::unicode_tables
