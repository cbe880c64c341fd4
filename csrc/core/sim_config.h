// Run semantics shared by every native backend (validated in Python): what
// a run computes, not how an engine computes it (that is EngineOptions,
// core/engine.h).
#pragma once

#include <cstdint>

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
  bool record_spike_times = true;  // write first-spike times (a run then passes one array per spiking layer)

  StepConstants step(int t) const { return step_constants(t, dt, v_thresh, tau_refrac, leak); }
  // tau of the last step: a neuron refractory past it is done for the run (neuron_done_for_run)
  float end_tau() const { return step(steps).tau; }
};

}  // namespace ttfs
