// Helpers for checking kernels against plain references: random tensors, conversions to double,
// closeness assertions and central finite differences in float64.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace opd::testing {

using core::Shape;
using core::Tensor;

// Uniform in [lo, hi), deterministic in seed.
Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
Tensor random_ids(const Shape& shape, int32_t vocab, uint64_t seed);
std::vector<double> to_double(const Tensor& t);
// Columns [begin, end) of a host f32 [n, V] tensor, as a new [n, end - begin] tensor.
Tensor column_slice(const Tensor& x, int64_t begin, int64_t end);
Tensor from_double(const std::vector<double>& v, const Shape& shape);

// Max over elements of |a - b| / (atol + rtol * |b|) must be <= 1; reports the worst element.
::testing::AssertionResult all_close(const std::vector<double>& actual,
                                     const std::vector<double>& expected, double rtol,
                                     double atol);
inline ::testing::AssertionResult all_close(const Tensor& actual,
                                            const std::vector<double>& expected, double rtol,
                                            double atol) {
  return all_close(to_double(actual), expected, rtol, atol);
}

// Central differences of a scalar function f at x (float64): d f / d x_i for every i.
std::vector<double> finite_difference(const std::function<double(const std::vector<double>&)>& f,
                                      std::vector<double> x, double eps = 1e-6);

}  // namespace opd::testing
