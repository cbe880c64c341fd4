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
