// Device checks shared by the dispatch: an op reached with a tensor on a device whose backend
// is not built (or not yet implemented for that op) is a clear error, never a wild pointer.
#pragma once

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace opd::backend {

inline void require_host(const char* op, const core::Tensor& t) {
  if (t.device() != core::Device::Host)
    throw Error(ErrorKind::Input, std::string("op ") + op + " has no CUDA implementation yet",
                "backend", "run with device = \"cpu\"");
}

}  // namespace opd::backend
