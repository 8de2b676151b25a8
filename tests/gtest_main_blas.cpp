// main() of the GoogleTest suites that run GEMMs: choose the OpenBLAS kernels as qisa's main()
// does (it may re-execute the test binary once, before any test or thread starts).
#include <gtest/gtest.h>

#include "kernels/cpu/blas_kernel.h"

int main(int argc, char** argv) {
  qisa::cpu::select_blas_kernel(argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
