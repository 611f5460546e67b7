// GoogleTest main for every opd test executable: starts the backend runtime (Kokkos) once.
#include <gtest/gtest.h>

#include "backend/ops.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  opd::backend::Runtime runtime;
  return RUN_ALL_TESTS();
}
