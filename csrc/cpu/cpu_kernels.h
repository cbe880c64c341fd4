// The CPU engine's kernels: the event-driven synaptic scatter and the fused
// neuron pass of a layer (cpu_kernels.cpp), compiled twice, for AVX2 and
// portably, and chosen per engine (EngineOptions::cpu_kernels).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/engine.h"
#include "../core/neuron_step.h"
#include "../core/synapse.h"

// The kernels are compiled once per instruction set, inside the entry points
// that carry the target attribute: everything they call must be inlined there.
#if defined(__GNUC__)
#define TTFS_KERNEL inline __attribute__((always_inline))
#else
#define TTFS_KERNEL inline
#endif

namespace ttfs {
namespace cpu {

// The changed elements of a layer's input, and what the layer's sums hold of it.
struct InputChanges {
  const float* signal;       // the inbound node's a_out and p_out now
  const float* prospective;
  const int64_t* changed;    // where they changed this step
  size_t count;
  float* seen_signal;        // what the sums hold so far
  float* seen_prospective;
};

// One changed input element: how much its signal and prospective map moved,
// and which of the two did.
struct InputEvent {
  int64_t j;
  float da, dp;
  bool signal, prospective;
};

// This step's input changes as a list taken before a scatter (threads sharing
// the layer each walk all of them).
struct EventList {
  const InputEvent* events;
  size_t count;
  size_t size() const { return count; }
  TTFS_KERNEL bool get(size_t n, InputEvent& e) const {
    e = events[n];
    return true;
  }
};

// A layer's weights as its scatter reads them: the kernel in Keras layout,
// or, where `rows`, a Conv2D's in row layout (synapse.h).
struct LayerWeights {
  const float* w;
  bool rows;
};

// A layer's arrays for the neuron pass; Acc: the running sums' type
// (EngineOptions::cpu_sums).
template <typename Acc>
struct LayerArrays {
  const Acc* current_sum;
  const Acc* missing_sum;
  const float* bias_dt;     // per neuron, b * dt; all zero when the layer has no bias
  const float* pool_count;  // per neuron for AveragePooling2D, else null
  float* membrane;
  float* threshold;
  float* refrac_until;
  float* last_spike;
  float* prospective;
  float* signal;

  // The arrays from neuron `begin` on.
  LayerArrays from(int64_t begin) const {
    return LayerArrays{current_sum + begin, missing_sum + begin, bias_dt + begin,
                       pool_count ? pool_count + begin : nullptr, membrane + begin, threshold + begin,
                       refrac_until + begin, last_spike + begin, prospective + begin, signal + begin};
  }
};

// Where a layer's pass puts the neurons that changed their output (signal or
// prospective flag) and those that spiked, in increasing order.
struct PassOutput {
  std::vector<int64_t>& changed;
  std::vector<int64_t>& spiked;
};

// A change of a layer's output at a later step, from trajectory(): neuron
// `neuron` has, from step index `step` on, these outputs, and spiked if `spiked`.
struct TrajectoryEvent {
  int64_t neuron;
  int32_t step;
  bool spiked;
  float signal, prospective;
};

// The events of this step as a list; returns the change in non-zero input elements.
int64_t collect_events(const InputChanges& c, std::vector<InputEvent>& events);

// One instruction set's kernels for running sums of type Acc. absorb: one
// thread takes the changes and scatters them into all sums (returns the
// change in non-zero input elements); scatter: a thread's share of a list of
// events; neuron_pass: steps 1-11 over n neurons, listing those that changed
// and spiked; trajectory: the same steps over n neurons whose sums stay as
// they are, at each of `count` steps in turn, appending every change of
// their outputs in neuron order (neuron numbers from `first`).
template <typename Acc>
struct SumKernels {
  int64_t (*absorb)(const Node&, const LayerWeights&, const InputChanges&, Acc*, Acc*);
  void (*scatter)(const Node&, const LayerWeights&, const EventList&, Acc*, Acc*, const OutputRange&);
  void (*neuron_pass)(const LayerArrays<Acc>&, int64_t, bool, const StepConstants&, const PassOutput&);
  void (*trajectory)(const LayerArrays<Acc>&, int64_t, bool, const StepConstants*, int, int64_t,
                     std::vector<TrajectoryEvent>&);
};

struct CpuKernelSet {
  const char* name;  // "avx512", "avx2" or "generic"
  SumKernels<double> f64;
  SumKernels<float> f32;
  template <typename Acc>
  const SumKernels<Acc>& sums() const;
};
template <>
inline const SumKernels<double>& CpuKernelSet::sums<double>() const { return f64; }
template <>
inline const SumKernels<float>& CpuKernelSet::sums<float>() const { return f32; }

// The kernels `requested` resolves to on this CPU: the widest vectors it has
// (AVX-512, else AVX2; CpuKernels::Avx2: at most AVX2), else the portable ones.
const CpuKernelSet& cpu_kernel_set(CpuKernels requested);

}  // namespace cpu
}  // namespace ttfs
