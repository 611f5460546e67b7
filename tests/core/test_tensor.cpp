// core::Tensor: shapes, views share storage, slices offset, clone copies, dtype checks.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/tensor.hpp"

using opd::core::DType;
using opd::core::Tensor;

TEST(Tensor, ShapeAndNumel) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.ndim(), 3);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(t.bytes(), 96u);
  EXPECT_EQ(t.describe(), "f32[2, 3, 4] host");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
}

TEST(Tensor, ViewAndSliceShareStorage) {
  Tensor t = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {3, 2});
  Tensor v = t.view({6});
  v.data<float>()[5] = 50;
  EXPECT_EQ(t.data<float>()[5], 50);
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (opd::core::Shape{2, 2}));
  EXPECT_EQ(s.data<float>()[0], 2);
  Tensor c = s.clone();
  c.data<float>()[0] = -1;
  EXPECT_EQ(t.data<float>()[2], 2);
}

TEST(Tensor, Misuse) {
  Tensor t = Tensor::zeros({4});
  EXPECT_THROW(t.data<int32_t>(), opd::Error);
  EXPECT_THROW(t.view({3}), opd::Error);
  EXPECT_THROW(t.slice(2, 5), opd::Error);
  EXPECT_THROW(Tensor::empty({2}, DType::F32, opd::core::Device::Cuda), opd::Error);
}
