#include "testing/reference.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

namespace opd::testing {

Tensor random_tensor(const Shape& shape, uint64_t seed, float lo, float hi) {
  Tensor t = Tensor::empty(shape);
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen);
  return t;
}

Tensor random_ids(const Shape& shape, int32_t vocab, uint64_t seed) {
  Tensor t = Tensor::empty(shape, core::DType::I32);
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen);
  return t;
}

std::vector<double> to_double(const Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  if (t.dtype() == core::DType::F32) {
    const float* p = t.data<float>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  } else {
    const int32_t* p = t.data<int32_t>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  }
  return out;
}

Tensor from_double(const std::vector<double>& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  return t;
}

::testing::AssertionResult all_close(const std::vector<double>& actual,
                                     const std::vector<double>& expected, double rtol,
                                     double atol) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " != expected " << expected.size();
  double worst = 0.0;
  std::size_t where = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] == expected[i]) continue;  // equal passes even with no tolerance (0 / 0)
    double r = std::abs(actual[i] - expected[i]) / (atol + rtol * std::abs(expected[i]));
    if (!(r <= worst)) {  // also catches NaN
      worst = std::isnan(r) ? INFINITY : r;
      where = i;
    }
  }
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << where << ": " << actual[where] << " vs expected " << expected[where]
         << " (error ratio " << worst << " with rtol " << rtol << ", atol " << atol << ")";
}

std::vector<double> finite_difference(const std::function<double(const std::vector<double>&)>& f,
                                      std::vector<double> x, double eps) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    double x0 = x[i];
    double h = eps * std::max(1.0, std::abs(x0));
    x[i] = x0 + h;
    double fp = f(x);
    x[i] = x0 - h;
    double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

Tensor column_slice(const Tensor& x, int64_t b, int64_t e) {
  const int64_t n = x.dim(0), V = x.dim(1);
  Tensor out = Tensor::empty({n, e - b});
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = b; j < e; ++j) out.data<float>()[r * (e - b) + j - b] = x.data<float>()[r * V + j];
  return out;
}

}  // namespace opd::testing
