// Run parameters shared by every native backend (validated in Python).
#pragma once

#include <cstdint>
#include <vector>

#include "neuron_step.h"

namespace ttfs {

struct SimConfig {
  int steps = 1;
  float dt = 1.0f;
  float v_thresh = 1.0f;
  float tau_refrac = 1.0f;
  bool leak = false;
  uint64_t seed = 0;
  bool early_stop = false;
  bool record_spike_times = true;  // CUDA: allocate and write first-spike times (the CPU
                                   // engine records them when a run passes arrays)
  uint64_t device_memory_limit = 0;  // CUDA: bytes a chunk's buffers may take (0: what is free)

  StepConstants step(int t) const { return step_constants(t, dt, v_thresh, tau_refrac, leak); }
};

// Where a backend writes the results of a batch (host memory, row-major).
struct ResultViews {
  int64_t samples = 0;
  int32_t* counts = nullptr;                // (N, classes, steps) cumulative
  std::vector<float*> first_spike;          // per spiking node: (N, size), 0 = never; empty: not recorded
  bool first_spike_on_device = false;       // CUDA: first_spike points to the engine's device memory
  int64_t* spike_counts = nullptr;          // (N, spiking nodes)
  double* synops = nullptr;                 // (N, steps)
  int32_t* stop_step = nullptr;             // (N,)
};

}  // namespace ttfs
