// The kernels of one time step of the ttfs-window coding
// (docs/WINDOW_SEMANTICS.md) on the step schedule (step_schedule.cu, run_chunk_window), in
// node order: one thread per (sample, neuron), blockIdx.y = sample. The
// per-neuron arithmetic is core/neuron_step.h's window_neuron_step, the same
// as the CPU engine's.
//
// Every node keeps, per sample and element, the step at which it spikes
// (`fired`, 0 = not (yet); the signed input's OFF neurons and what is
// gathered from them in `fired_off`). A layer gathers D(t) over its fan-in:
// the weights of the inputs with fired == t, summed in double and rounded to
// float32 once, which gives the CPU scatter's value (WINDOW_SEMANTICS.md,
// "For the native backends"). A Gather's element spikes at its source's
// step plus the inbound's delay, written as soon as the source has fired
// (a step ahead of the arrival; readers compare with t).
// As in step_kernels.cuh: step t is Control::step; state is initialised at
// t == 1 without being read; spike counts and operations go through
// per-block partial sums in a fixed order. No floating-point atomics.
#pragma once

#include "kernel_common.cuh"
#include "step_kernels.cuh"
#include "synapse_gather.cuh"

namespace ttfs {
namespace cuda {

// Where the window coding's per-element spike steps live: [sample][row].
struct FiredView {
  int* fired;
  int* fired_off;  // null unless the input is signed
  int64_t row;
  const Control* control;
  __device__ int* on(int64_t s, int64_t offset) const { return fired + s * row + offset; }
  __device__ int* off(int64_t s, int64_t offset) const { return fired_off ? fired_off + s * row + offset : nullptr; }
};

// Once per chunk, before step 1: every input element's ON (and OFF) spike
// step (WINDOW_SEMANTICS.md "Input"; 0 = silent at level 0 without zero_spikes).
__global__ void window_input_kernel(const float* __restrict__ x, int64_t in_size, WindowConfig w, FiredView f) {
  const int64_t s = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= in_size) return;
  const float v = x[s * in_size + j];
  const int ref = w.input_ref();
  const int k = window_input_level(v, w.input_gain, w.input_steps);
  f.on(s, 0)[j] = (k > 0 || w.zero_spikes) ? ref - k : 0;
  if (f.fired_off) {
    const int k_off = window_input_level(-v, w.input_gain, w.input_steps);
    f.off(s, 0)[j] = (k_off > 0 || w.zero_spikes) ? ref - k_off : 0;
  }
}

// The input spikes of this step: their synaptic operations, as partial sums per block.
__global__ void __launch_bounds__(kBlock) window_input_record_kernel(int64_t in_size, int ref, FiredView f,
                                                                    Recorder r) {
  const int64_t s = blockIdx.y;
  const int t = f.control->step;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int spikes = 0;
  double ops = 0.0;
  if (j < in_size && t <= ref) {
    spikes = int(f.on(s, 0)[j] == t) + int(f.fired_off && f.off(s, 0)[j] == t);
    ops = r.fanout[j] * spikes;  // whole numbers: exact in any order
  }
  write_block_partials(r, s, spikes, ops);
}

// Flatten, Reshape, ZeroPadding2D, UpSampling2D, Concatenate: an element
// spikes at its source's step plus its inbound's delay (padding never).
struct WindowGatherArgs {
  int size;
  const int64_t* source;  // per element: offset in the sample's row, -1 = zero padding
  const int* delay;       // per element: its inbound's delay
  int64_t out_offset;
  FiredView f;
};

__global__ void __launch_bounds__(kBlock) window_gather_kernel(const WindowGatherArgs a) {
  const int64_t s = blockIdx.y;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= a.size) return;
  const int64_t src = a.source[i];
  const int on = src >= 0 ? a.f.on(s, 0)[src] : 0;
  a.f.on(s, a.out_offset)[i] = on != 0 ? on + a.delay[i] : 0;
  if (a.f.fired_off) {
    const int off = src >= 0 ? a.f.off(s, 0)[src] : 0;
    a.f.off(s, a.out_offset)[i] = off != 0 ? off + a.delay[i] : 0;
  }
}

struct WindowLayerArgs {
  Geometry g;
  int size;
  int start, ref;          // W and R (output: both R_out)
  bool output;             // the output layer: integrates, never fires, read at R_out
  bool zero_spikes;
  float dt;
  int64_t in_offset, out_offset;
  const float* kernel;     // ramp weights, Keras layout (weighted layers)
  const float* bias;       // output: b_o per channel, or null
  const float* theta;      // windowed layer: threshold per channel
  const float* weight;     // AveragePooling2D: ramp weight per neuron
  float* state;            // WindowField fields, each [sample][size]
  int64_t field_stride;    // capacity * size
  float* y;                // output: [sample][size] read-out values
  FiredView f;
  Recorder r;
  // A residual Add (WINDOW_SEMANTICS.md "Add"): its D(t) in double, [sample][size],
  // summed by its synapse groups (window_group_kernel) before its own kernel.
  double* sums;
  int delay;               // a synapse group: steps added to its input's spikes
  bool first_group;        // a synapse group: the first of its Add (starts the sum)
};

// D(t) before rounding: the ramp weights of the inputs whose spike arrives at
// step t (ON +1, OFF -1; a spike emitted at step e arrives at e + delay),
// added to `acc` in increasing input index, the CPU scatter's order.
template <NodeKind Kind>
__device__ __forceinline__ double add_window_arrivals(const WindowLayerArgs& a, int64_t s, int i, int t, int delay,
                                                      double acc) {
  const int emitted = t - delay;
  if (emitted < 1) return acc;  // (0 marks "not fired")
  const int* on = a.f.on(s, a.in_offset);
  const int* off = a.f.off(s, a.in_offset);
  for_each_input<Kind>(
      a.g, i,
      [&](int64_t, auto&& each) {
        for (int c = 0; c < a.g.in_c; ++c) each(c);
      },
      [](int64_t) { return true; },
      [&](int64_t j, int64_t w) {
        const int arrivals = int(on[j] == emitted) - int(off && off[j] == emitted);
        if (arrivals == 0) return;
        if constexpr (Kind == NodeKind::AveragePooling2D)
          acc += double(arrivals);                       // pooling counts its arrivals
        else
          acc += double(a.kernel[w]) * double(arrivals);  // exact product, as the CPU scatter's
      });
  return acc;
}

// One synapse group of a residual Add (an open Dense, Conv2D or
// DepthwiseConv2D node), one thread per (sample, Add neuron): continues the
// Add's running double sum of D(t) with this group's arrivals, group after
// group in inbound order, as the CPU scatters them. `start` is the Add's W:
// from then on its slope is 1 and nothing is summed.
template <NodeKind Kind>
__global__ void __launch_bounds__(kBlock) window_group_kernel(const WindowLayerArgs a) {
  const int64_t s = blockIdx.y;
  const int t = a.f.control->step;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= a.size || t >= a.start) return;
  double* sum = a.sums + s * a.size + i;
  *sum = add_window_arrivals<Kind>(a, s, i, t, a.delay, a.first_group ? 0.0 : *sum);
}

// Dense, Conv2D, DepthwiseConv2D, AveragePooling2D, Add, windowed or the output:
// D(t) gathered over the fan-in before the window, then window_neuron_step
// (window_output_step and the read for the output).
template <NodeKind Kind>
__global__ void __launch_bounds__(kBlock) window_layer_kernel(const WindowLayerArgs a) {
  const int64_t s = blockIdx.y;
  const int t = a.f.control->step;
  const bool first_step = t == 1;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  int spikes = 0;
  double ops = 0.0;
  if (i < a.size && t <= a.ref) {  // nothing changes after R
    const int64_t n = s * a.size + i;
    float* v_state = a.state + kWindowV * a.field_stride + n;
    float* i_state = a.state + kWindowI * a.field_stride + n;
    int* fired = a.f.on(s, a.out_offset) + i;
    float V = first_step ? 0.0f : *v_state;
    float I = first_step ? 0.0f : *i_state;
    int spike = first_step ? 0 : *fired;
    float d = 0.0f;
    if (t < a.start) {  // D(t): the ramps of this step's arrivals (ON +1, OFF -1)
      if constexpr (Kind == NodeKind::Add) {
        d = float(a.sums[n]);  // (its groups summed them)
      } else {
        const double acc = add_window_arrivals<Kind>(a, s, i, t, 0, 0.0);
        d = Kind == NodeKind::AveragePooling2D ? window_pool_increment(acc, a.weight[i]) : float(acc);
      }
    }
    if (a.output) {
      record_first_spike(a.r.first_spike, n, false, first_step, 0.0f);  // never fires: 0
      window_output_step(d, V, I);
      if (t == a.ref) a.y[n] = window_output_value(V, a.bias ? a.bias[i % a.g.out_c] : 0.0f);
    } else {
      const bool fire = window_neuron_step(t, a.start, a.ref, d, a.theta[i % a.g.out_c], a.zero_spikes, V, I, spike);
      record_first_spike(a.r.first_spike, n, fire, first_step, mul_rn(float(t), a.dt));
      if (fire) {
        spikes = 1;
        ops = a.r.fanout[i];
      }
    }
    *v_state = V;
    *i_state = I;
    *fired = spike;
  }
  write_block_partials(a.r, s, spikes, ops);
}

// MaxPooling2D: fires at the first step at which an input of its pooling
// window has fired (the largest level), at most once.
__global__ void __launch_bounds__(kBlock) window_maxpool_kernel(const WindowLayerArgs a) {
  const int64_t s = blockIdx.y;
  const int t = a.f.control->step;
  const bool first_step = t == 1;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  int spikes = 0;
  double ops = 0.0;
  if (i < a.size && t <= a.ref) {
    int* fired = a.f.on(s, a.out_offset) + i;
    const int spike = first_step ? 0 : *fired;
    bool fire = false;
    if (spike == 0) {
      const Geometry& g = a.g;
      const int pos = i / g.out_c, c = i - pos * g.out_c;
      const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
      const int* in = a.f.on(s, a.in_offset);
      float m, unused;
      max_pool_window_of(
          g, oy, ox, c, [&](int64_t j) { return in[j] != 0 && in[j] <= t ? 1.0f : 0.0f; },
          [](int64_t) { return 0.0f; }, m, unused);
      fire = m > 0.0f;
    }
    *fired = fire ? t : spike;
    record_first_spike(a.r.first_spike, s * a.size + i, fire, first_step, mul_rn(float(t), a.dt));
    if (fire) {
      spikes = 1;
      ops = a.r.fanout[i];
    }
  }
  write_block_partials(a.r, s, spikes, ops);
}

// Last kernel of a step, one block per sample: spike counts and the step's
// synaptic operations from the partial sums (the input's first, then the
// layers', in order, as the CPU adds them).
struct WindowReadoutArgs {
  int layers;
  const int* layer_partial_offset;
  const int* layer_partial_blocks;
  int input_partial_offset, input_partial_blocks;
  const int* partial_spikes;
  const double* partial_ops;
  int partial_stride;
  int steps;
  int64_t* spike_counts;  // [sample][layers]
  double* synops;         // [sample][steps]
  const Control* control;
};

__global__ void __launch_bounds__(kReadoutBlock) window_readout_kernel(const WindowReadoutArgs a) {
  const int64_t s = blockIdx.x;
  const int t = a.control->step;
  double step_ops = 0.0;  // meaningful in thread 0
  for (int l = -1; l < a.layers; ++l) {
    const int64_t begin = s * a.partial_stride + (l < 0 ? a.input_partial_offset : a.layer_partial_offset[l]);
    const int blocks = l < 0 ? a.input_partial_blocks : a.layer_partial_blocks[l];
    long long spikes = 0;
    double ops = 0.0;
    for (int b = threadIdx.x; b < blocks; b += kReadoutBlock) {
      spikes += a.partial_spikes[begin + b];
      ops += a.partial_ops[begin + b];
    }
    spikes = block_sum<kReadoutBlock>(spikes);
    ops = block_sum<kReadoutBlock>(ops);
    if (threadIdx.x == 0) {
      if (l >= 0) {
        int64_t* count = a.spike_counts + s * a.layers + l;
        *count = (t == 1 ? 0 : *count) + spikes;
      }
      step_ops += ops;
    }
  }
  if (threadIdx.x == 0) a.synops[s * a.steps + (t - 1)] = step_ops;
}

// After the read step, one block per sample: the decision (argmax y, lowest
// index on exact ties) as counts, no operations after R_out, the stop step.
struct WindowFinishArgs {
  int classes, steps, read_step, stop;
  const float* y;   // [sample][classes]
  int* counts;      // [sample][classes][steps]
  double* synops;   // [sample][steps]
  int* stop_step;   // [sample]
};

__global__ void __launch_bounds__(kReadoutBlock) window_finish_kernel(const WindowFinishArgs a) {
  const int64_t s = blockIdx.x;
  const float* y = a.y + s * a.classes;
  int best = 0;
  for (int c = 1; c < a.classes; ++c)
    if (y[c] > y[best]) best = c;
  int* counts = a.counts + s * int64_t(a.classes) * a.steps;
  for (int64_t e = threadIdx.x; e < int64_t(a.classes) * a.steps; e += kReadoutBlock) {
    const int c = int(e / a.steps), t = int(e - int64_t(c) * a.steps) + 1;
    counts[e] = (c == best && t >= a.read_step) ? 1 : 0;
  }
  for (int t = a.read_step + threadIdx.x; t < a.steps; t += kReadoutBlock) a.synops[s * a.steps + t] = 0.0;
  if (threadIdx.x == 0) a.stop_step[s] = a.stop;
}

}  // namespace cuda
}  // namespace ttfs
