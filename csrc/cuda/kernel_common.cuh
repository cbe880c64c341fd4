// What the kernels of both time loops share (step_kernels.cuh: one step of
// every node at a time; layer_kernels.cuh: every step of one node at a
// time): block sizes, the run's constants, the state fields, a block sum in
// a fixed order and the softmax's exp. No kernels here (this header is
// included by several translation units).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "../core/neuron_step.h"
#include "../core/philox.h"

namespace ttfs {
namespace cuda {

constexpr int kBlock = 256;         // threads per block of the per-neuron kernels
constexpr int kReadoutBlock = 128;  // threads per block (= per sample) of the readout

// Set by the host before a batch, advanced on the device.
struct Control {
  int step;               // t of the step being simulated, from 1
  int running;            // samples not yet stopped (early stop)
  int64_t sample_offset;  // index of the batch's first sample in the whole input
};

// Run constants (SimConfig) as the kernels need them.
struct StepParams {
  float dt, v0, tau_refrac;
  float end_tau;  // tau of the last step
  int leak;
  int steps;
  int early_stop;
  uint64_t seed;
};

// The scalars of step t, from the shared definition in core/neuron_step.h.
__device__ __forceinline__ StepConstants step_constants(const StepParams& p, int t) {
  return ttfs::step_constants(t, p.dt, p.v0, p.tau_refrac, p.leak != 0);
}

// neuron_done_for_run (core/neuron_step.h) with the run's constants.
__device__ __forceinline__ bool done_for_run(const StepParams& p, float last_spike) {
  return neuron_done_for_run(last_spike, p.tau_refrac, p.end_tau);
}

// Float state fields of a node, each [sample][size], field after field.
enum IntegratingField { kCurrent = 0, kMissing, kMembrane, kRefracUntil, kLastSpike, kIntegratingFields };
enum WindowField { kWindowV = 0, kWindowI, kWindowStateFields };  // the window coding's V and I
enum MaxPoolField { kPooled = 0, kPooledProspective, kPoolLastSpike, kPoolLastProspective, kMaxPoolFields };

// Block sum in a fixed order (warp shuffles, then warps in index order), so
// the result does not depend on scheduling. Returns the sum in thread 0.
// Every thread of the block must call it.
template <int Threads, typename T>
__device__ __forceinline__ T block_sum(T value) {
  static_assert(Threads % 32 == 0, "whole warps");
  __shared__ T warp_sums[Threads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = value;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0)
    for (int w = 0; w < Threads / 32; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums may be reused by the next call
  return total;
}

// Matches the CPU's std::exp(float) (glibc expf, at most 0.502 ulp): exp in
// double rounded once to float32 is the correctly rounded value in all but
// vanishingly rare cases, where CUDA's expf may be 2 ulp away.
__device__ __forceinline__ float softmax_exp(float x) { return float(exp(double(x))); }

}  // namespace cuda
}  // namespace ttfs
