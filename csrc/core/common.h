// Shared definitions for host (C++/OpenMP) and device (CUDA) code.
#pragma once

#if defined(__CUDACC__)
#define TTFS_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Always inlined so that the CPU backend's per-ISA clones vectorise them.
#define TTFS_HD inline __attribute__((always_inline))
#else
#define TTFS_HD inline
#endif

namespace ttfs {
// Correctly rounded float32 multiply and add that never contract into a
// fused multiply-add, on the host (built with -ffp-contract=off) and the device.
TTFS_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TTFS_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
// The same in float64 (the window coding's input levels, WINDOW_SEMANTICS.md "Input").
TTFS_HD double dmul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
TTFS_HD double dadd_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
}  // namespace ttfs
