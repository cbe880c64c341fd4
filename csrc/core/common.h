// Shared definitions for host (C++/OpenMP) and device (CUDA) code.
#pragma once

#if defined(__CUDACC__)
#define TTFS_HD __host__ __device__ __forceinline__
#else
#define TTFS_HD inline
#endif
