// The CPU engine's ttfs-window coding (docs/WINDOW_SEMANTICS.md), beside the
// original coding's SampleRunner: samples in parallel (OpenMP), each
// simulated step by step up to the read step R_out, event-driven. Every
// spike that arrives before the reading layer's window opens is scattered
// once, as ramp weights into per-neuron double accumulators (D(t), rounded
// to float32 once; later arrivals change nothing: counted, not scattered);
// a layer's fused neuron pass
// (window_neuron_step, core/neuron_step.h) runs only from its first arrival
// (or its window) to the end of its window.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/engine.h"

namespace ttfs {

// This step's spikes of a node (element indices; OFF: the signed input's).
struct SpikeLists {
  const int64_t* on;
  size_t on_count;
  const int64_t* off;
  size_t off_count;
};

// A windowed layer's arrays for its fused pass at step t.
struct WindowPass {
  int t, W, R;
  bool zero_spikes;
  double* acc;          // D(t) in double, cleared by the pass
  const float* weight;  // AveragePooling2D: ramp weight per neuron; else null
  const float* theta;   // per neuron
  float* V;
  float* I;
  int* s;
  uint8_t* fired;       // out: 1 where the neuron fired
};

// The window coding's kernels for one instruction set (AVX2 or portable).
struct WindowKernels {
  void (*scatter)(const Node&, const float* rows, const SpikeLists&, double* acc);
  int64_t (*window_pass)(const WindowPass&, int64_t n);  // returns how many fired
  void (*output_pass)(double* acc, float* V, float* I, int64_t n);
};
const WindowKernels& window_kernels(bool avx2);

// What the engine prepares once per network for the window coding.
class CpuWindowPlan {
 public:
  // Throws std::invalid_argument if the network lacks its window constants.
  CpuWindowPlan(const Network& net, const SimConfig& config, bool avx2);
  // Simulates `in` into `out` on up to `threads` threads (one sample each).
  void run(const Input& in, const Results& out, int threads) const;

  // Per node: what its step reads besides the Node itself.
  struct NodeTables {
    std::vector<float> theta;          // windowed layer: threshold per neuron
    std::vector<float> rows;           // Conv2D where conv_rows_apply: ramp kernel in row layout
    // Gather: the outputs of each inbound element (CSR over the inbounds' elements, in order)
    std::vector<int64_t> first_output, outputs;
    std::vector<int64_t> inbound_begin;  // Gather: first CSR row of each inbound
    int ring = 1;                        // Gather: max delay + 1; an Add's synapse group: delay + 1
  };

 private:
  const Network& net_;
  const SimConfig& cfg_;
  const WindowKernels& kernels_;
  std::vector<int> slot_;           // node -> index among the spiking layers (-1: none)
  std::vector<NodeTables> tables_;
};

}  // namespace ttfs
