// Run semantics shared by every native backend (validated in Python): what
// a run computes, not how an engine computes it (that is EngineOptions,
// core/engine.h).
#pragma once

#include <cstdint>

#include "neuron_step.h"

namespace ttfs {

// The coding a run simulates: SNN Toolbox's ttfs_dyn_thresh (SEMANTICS.md) or
// TTFS in per-layer windows (docs/WINDOW_SEMANTICS.md).
enum class Coding : int { DynThresh = 0, Window = 1 };

// The run-wide constants of the window coding (the per-node ones are
// Node::window), from simulation/window_plan.py.
struct WindowConfig {
  int input_steps = 1;        // S_0; the input's reference step is R_0 = 1 + S_0
  double input_gain = 1.0;    // g = f64(S_0) / f64(X_0)
  bool signed_input = false;  // ON/OFF pair per input element
  bool zero_spikes = true;    // level-0 neurons fire at the end of their window
  int read_step = 1;          // R_out: the output membrane is read at this step
  TTFS_HD int input_ref() const { return 1 + input_steps; }
};

struct SimConfig {
  int steps = 1;
  float dt = 1.0f;
  float v_thresh = 1.0f;
  float tau_refrac = 1.0f;
  bool leak = false;
  uint64_t seed = 0;
  bool early_stop = false;
  bool record_spike_times = true;  // write first-spike times (a run then passes one array per spiking layer)
  Coding coding = Coding::DynThresh;
  WindowConfig window;             // coding == Window only

  StepConstants step(int t) const { return step_constants(t, dt, v_thresh, tau_refrac, leak); }
  // tau of the last step: a neuron refractory past it is done for the run (neuron_done_for_run)
  float end_tau() const { return step(steps).tau; }
};

}  // namespace ttfs
