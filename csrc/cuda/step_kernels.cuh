// The kernels of one time step (SEMANTICS.md), in the order the engine
// launches them for each node: one thread per (sample, neuron), blockIdx.y =
// sample in the batch. Per-neuron arithmetic is the shared code of
// csrc/core/neuron_step.h; the random numbers are csrc/core/philox.h.
//
// Conventions shared by all kernels:
// * Step t is read from Control::step (advanced by the last kernel of the
//   step), so the same captured CUDA graph serves every step.
// * State is initialised lazily: at t == 1 a kernel reads no state of its
//   node and treats it as the initial value, and writes every field. So a new
//   batch only needs its small per-sample flags cleared. "Never fired" is
//   stored as 0 rather than the CPU's -1: the spike times are only ever tested
//   with `> 0`, and every tau is > 0.
// * A finished sample (early stop) is skipped by every kernel, which freezes
//   its results exactly where the CPU engine stops.
// * Per element of every node's output: stamp = the step it last changed,
//   old_signal / old_prospective = its values before that change, written by
//   publish(). A layer's event-driven input (add_input_events) adds the
//   stamped elements' deltas to running sums in the CPU engine's order.
// * Per-(sample, node) flags: changed_step = the last step at which the node's
//   signal or prospective map changed (so nothing needs clearing per step),
//   nonzero = the node's signal has a non-zero element. Every signal that a
//   layer reads only ever grows (an input constant from step 1, "dt once
//   fired", max-pool's sticky S; the softmax output is read by no layer), so
//   nonzero is sticky and set where an element first becomes non-zero.
// * Spike counts and synaptic operations are reduced per block in a fixed
//   order and written to per-(sample, block) partial sums; the readout kernel
//   adds those up in a fixed order. No floating-point atomics anywhere, so
//   every result is deterministic and independent of the batch.
#pragma once

#include "kernel_common.cuh"
#include "synapse_gather.cuh"

namespace ttfs {
namespace cuda {

// Addressing of what is shared between nodes: every node's signal and
// prospective map ([sample][row], node at its offset in the row), per
// element the step it last changed and its values before that change
// (stamp, old_signal, old_prospective: the events the next layer adds up),
// and the per-sample flags ([sample][flag_row]: changed_step[nodes],
// nonzero[nodes], done).
struct SampleView {
  float* signal;
  float* prospective;
  int* stamp;
  float* old_signal;
  float* old_prospective;
  int64_t row;
  int* flags;
  int nodes;
  int flag_row;
  Control* control;

  __device__ int* changed_step(int64_t s) const { return flags + s * flag_row; }
  __device__ int* nonzero(int64_t s) const { return flags + s * flag_row + nodes; }
  __device__ int* done(int64_t s) const { return flags + s * flag_row + 2 * nodes; }
  __device__ float* signal_of(int64_t s, int64_t offset) const { return signal + s * row + offset; }
  __device__ float* prospective_of(int64_t s, int64_t offset) const {
    return prospective + s * row + offset;
  }
};

// Where a spiking node records its spike-train records.
struct Recorder {
  float* first_spike;     // [sample][size], 0 = never; null: not recorded
  const double* fanout;   // [size]
  int* partial_spikes;    // [sample][partial_stride]
  double* partial_ops;    // [sample][partial_stride]
  int partial_offset;     // this node's first block in a sample's partials
  int partial_stride;
};

struct LayerArgs {
  Geometry g;
  int size;
  int node, inbound;
  int64_t in_offset, out_offset;   // in the signal/prospective row
  const float* kernel;             // Keras layout (weighted layers)
  const float* bias_dt;            // b * dt, or null
  const float* pool_count;         // AveragePooling2D: cells per output position
  float* state;                    // IntegratingField / MaxPoolField fields
  int64_t field_stride;            // capacity * size
  // Event-driven input (integrating layers, when `sums`): the running sums of
  // L(a_in) and L_abs(p_in) in double, [2][sample][size], and for Conv2D and
  // Dense the changed channels of each input cell at this step (cell_changes_kernel).
  double* sums;
  const int* cell_count;           // [sample][cells]
  const int* cell_list;            // [sample][cells][in_c]
  // A residual Add (SEMANTICS.md "Add"): its synapse groups (open nodes, whose
  // add_group_kernel filled `sums` before), and for an open node, whether it
  // is its Add's first group (which starts the sums at step 1).
  const int* groups;
  int group_count;
  bool first_group;
  SampleView v;
  Recorder r;
  StepParams p;
};

// ------------------------------------------------------------- helpers

// Records into the first-spike times, element n (CPU: `if (first[i] == 0)
// first[i] = tau`); `first_spike` is null when the run does not record them.
__device__ __forceinline__ void record_first_spike(float* first_spike, int64_t n, bool recorded,
                                                   bool first_step, float tau) {
  if (!first_spike) return;
  if (first_step)
    first_spike[n] = recorded ? tau : 0.0f;
  else if (recorded && first_spike[n] == 0.0f)
    first_spike[n] = tau;
}

// Writes element i of a node's output (at `offset` in the row) and the
// node's per-sample flags (the CPU engine's `changed`: signal or prospective
// differ from last step). A change is stamped with the step and the old
// values, for the event-driven input of the next layer.
__device__ __forceinline__ void publish(const SampleView& v, int64_t s, int node, int64_t offset, int i,
                                        float new_signal, float new_prospective, float old_signal,
                                        float old_prospective, bool first_step, int t) {
  const bool changed = new_signal != old_signal || new_prospective != old_prospective;
  const int64_t e = s * v.row + offset + i;
  if (changed || first_step) {
    v.signal[e] = new_signal;
    v.prospective[e] = new_prospective;
  }
  if (v.stamp) {  // null when the layers gather their whole fan-in instead
    if (changed || first_step) v.stamp[e] = changed ? t : 0;
    if (changed) {
      v.old_signal[e] = old_signal;
      v.old_prospective[e] = old_prospective;
    }
  }
  if (changed) v.changed_step(s)[node] = t;  // all writers store the same value
  if (new_signal != 0.0f && old_signal == 0.0f) v.nonzero(s)[node] = 1;
}

// This block's spike count and synaptic operations for this step. Every
// thread of the block must call it.
__device__ __forceinline__ void write_block_partials(const Recorder& r, int64_t s, int spikes, double ops) {
  const int64_t slot = s * r.partial_stride + r.partial_offset + blockIdx.x;
  if (!__syncthreads_or(spikes != 0)) {  // common: nothing recorded in this block
    if (threadIdx.x == 0) {
      r.partial_spikes[slot] = 0;
      r.partial_ops[slot] = 0.0;
    }
    return;
  }
  const int block_spikes = block_sum<kBlock>(spikes);
  const double block_ops = block_sum<kBlock>(ops);
  if (threadIdx.x == 0) {
    r.partial_spikes[slot] = block_spikes;
    r.partial_ops[slot] = block_ops;
  }
}

// ------------------------------------------------------------- kernels

// Once per batch, before step 1: the input delivers x * dt on every step and
// an all-zero prospective map (which the node's lazily written row holds).
__global__ void input_kernel(const float* __restrict__ x, int64_t in_size, float dt, SampleView v) {
  const int64_t s = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= in_size) return;
  const float a = mul_rn(x[s * in_size + j], dt);  // x * dt, as the CPU
  publish(v, s, 0, 0, int(j), a, 0.0f, 0.0f, 0.0f, true, 1);  // a change from 0 at step 1
  if (j == 0) v.changed_step(s)[0] = 1;  // the input "changes" at step 1 only
}

// Before a Conv2D or Dense layer's integrate_kernel (event-driven input):
// for each input cell, the channels that changed at this step, in
// increasing order, so that the layer adds the events of a cell without
// testing every channel. One block per (cell, sample), kCellBlock threads or
// fewer (whole warps) reading consecutive channels; the order comes from
// warp ballots, so the lists are deterministic.
constexpr int kCellBlock = 128;

struct CellChangesArgs {
  int cells, channels;
  int inbound;
  int64_t in_offset;
  int* count;  // [sample][cells]
  int* list;   // [sample][cells][channels]
  SampleView v;
};

__global__ void __launch_bounds__(kCellBlock) cell_changes_kernel(const CellChangesArgs a) {
  const int64_t s = blockIdx.y;
  if (*a.v.done(s)) return;  // uniform over the block
  const int t = a.v.control->step;
  if (a.v.changed_step(s)[a.inbound] != t) return;  // the layer reads no events then
  const int cell = blockIdx.x;
  const int* stamp = a.v.stamp + s * a.v.row + a.in_offset + int64_t(cell) * a.channels;
  int* list = a.list + (s * a.cells + cell) * int64_t(a.channels);
  __shared__ int warp_counts[kCellBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int written = 0;  // the same in every thread
  for (int c0 = 0; c0 < a.channels; c0 += blockDim.x) {
    const int c = c0 + threadIdx.x;
    const bool hit = c < a.channels && stamp[c] == t;
    const unsigned mask = __ballot_sync(0xffffffffu, hit);
    if (lane == 0) warp_counts[warp] = __popc(mask);
    __syncthreads();
    int before = written;
    for (int w = 0; w < warp; ++w) before += warp_counts[w];
    if (hit) list[before + __popc(mask & ((1u << lane) - 1u))] = c;
    for (int w = 0; w < warps; ++w) written += warp_counts[w];
    __syncthreads();  // warp_counts is rewritten by the next chunk
  }
  if (threadIdx.x == 0) a.count[s * a.cells + cell] = written;
}

// Flatten, Reshape, ZeroPadding2D, Concatenate: copy (signal, prospective)
// through the index map whenever an inbound node changed (CPU gather_step).
struct GatherArgs {
  int size;
  int node;
  const int* inbound;      // inbound node indices
  int inbound_count;
  const int64_t* source;   // per element: offset in the sample's row, -1 = zero padding
  int64_t out_offset;
  SampleView v;
};

__global__ void __launch_bounds__(kBlock) gather_kernel(const GatherArgs a) {
  const int64_t s = blockIdx.y;
  if (*a.v.done(s)) return;
  const int t = a.v.control->step;
  bool changed = false;
  for (int k = 0; k < a.inbound_count; ++k) changed = changed || a.v.changed_step(s)[a.inbound[k]] == t;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= a.size) return;
  if (changed || t == 1) {  // at t == 1 also writes the lazily initialised zeros
    const int64_t src = a.source[i];
    const float signal = src >= 0 ? a.v.signal_of(s, 0)[src] : 0.0f;
    const float prospective = src >= 0 ? a.v.prospective_of(s, 0)[src] : 0.0f;
    const bool first_step = t == 1;
    publish(a.v, s, a.node, a.out_offset, i, signal, prospective,
            first_step ? 0.0f : a.v.signal_of(s, a.out_offset)[i],
            first_step ? 0.0f : a.v.prospective_of(s, a.out_offset)[i], first_step, t);
  }
}

// Dense, Conv2D, DepthwiseConv2D, AveragePooling2D: SEMANTICS.md steps 1-11.
// A ReLU neuron done for the run (done_for_run) is skipped, input included.
// Steps 1-2 (I, M) are recomputed by gathering over the fan-in only when the
// inbound node changed for this sample; otherwise the stored values are
// reused (they depend on the inbound state alone). With Softmax, only steps
// 1-4, 9 and 10 run here; softmax_kernel decides the spikes afterwards.
template <NodeKind Kind, bool Softmax>
__global__ void __launch_bounds__(kBlock) integrate_kernel(const LayerArgs a) {
  const int64_t s = blockIdx.y;
  if (*a.v.done(s)) return;  // uniform over the block
  const int t = a.v.control->step;
  const bool first_step = t == 1;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  int spikes = 0;
  double ops = 0.0;
  if (i < a.size && !(!Softmax && !first_step && done_for_run(a.p, a.state[kLastSpike * a.field_stride + s * a.size + i]))) {
    const StepConstants k = step_constants(a.p, t);
    const int64_t n = s * a.size + i;
    float* current_state = a.state + kCurrent * a.field_stride + n;
    float* missing_state = a.state + kMissing * a.field_stride + n;
    float* membrane_state = a.state + kMembrane * a.field_stride + n;
    float* refrac_state = a.state + kRefracUntil * a.field_stride + n;
    float* signal = a.v.signal_of(s, a.out_offset) + i;
    float* prospective = a.v.prospective_of(s, a.out_offset) + i;

    // The threshold left by the previous step is v0 + M of that step (v0 at
    // step 1), recomputed by the same float32 addition instead of stored.
    const float missing_before = first_step ? 0.0f : *missing_state;
    float threshold = k.v0 + missing_before;

    float current, missing;
    bool input_changed = false, has_input = false;  // 2: the sample's input has a non-zero element
    if constexpr (Kind == NodeKind::Add) {  // any group
      for (int k = 0; k < a.group_count; ++k) {
        input_changed = input_changed || a.v.changed_step(s)[a.groups[k]] == t;
        has_input = has_input || a.v.nonzero(s)[a.groups[k]] != 0;
      }
    } else {
      input_changed = a.v.changed_step(s)[a.inbound] == t;
      has_input = a.v.nonzero(s)[a.inbound] != 0;
    }
    if (input_changed) {
      double current_sum = 0.0, missing_sum = 0.0;
      if constexpr (Kind == NodeKind::Add) {  // the groups' kernels added this step's changes
        current_sum = a.sums[n];
        missing_sum = a.sums[n + a.field_stride];
      } else if (a.sums) {  // event-driven: the running sums plus this step's input changes
        double* sums = a.sums + n;
        if (!first_step) {
          current_sum = sums[0];
          missing_sum = sums[a.field_stride];
        }
        const InputEvents in{a.v.signal_of(s, a.in_offset), a.v.prospective_of(s, a.in_offset),
                             a.v.old_signal + s * a.v.row + a.in_offset,
                             a.v.old_prospective + s * a.v.row + a.in_offset,
                             a.v.stamp + s * a.v.row + a.in_offset,
                             a.cell_count ? a.cell_count + s * int64_t(a.g.in_h) * a.g.in_w : nullptr,
                             a.cell_list ? a.cell_list + s * int64_t(a.g.in_h) * a.g.in_w * a.g.in_c : nullptr,
                             t};
        add_input_events<Kind>(a.g, a.kernel, i, in, current_sum, missing_sum);
        sums[0] = current_sum;
        sums[a.field_stride] = missing_sum;
      } else {  // full gather over the fan-in
        gather_synaptic_input<Kind>(a.g, a.kernel, i, a.v.signal_of(s, a.in_offset),
                                    a.v.prospective_of(s, a.in_offset), current_sum, missing_sum);
      }
      // 2: no current (and no bias) until the sample's input has a non-zero element
      if constexpr (Kind == NodeKind::AveragePooling2D) {
        const float cells = a.pool_count[i / a.g.out_c];
        current = has_input ? float(current_sum) / cells : 0.0f;
        missing = float(missing_sum) / cells;
      } else {
        current = !has_input ? 0.0f
                  : a.bias_dt ? float(current_sum) + a.bias_dt[i % a.g.out_c]
                              : float(current_sum);
        missing = float(missing_sum);
      }
      *current_state = current;
      *missing_state = missing;
    } else if (first_step) {  // inbound still silent: I = M = 0
      current = missing = 0.0f;
      *current_state = 0.0f;
      *missing_state = 0.0f;
      if (a.sums && Kind != NodeKind::Add) {  // (an Add's first group started its sums)
        a.sums[n] = 0.0;
        a.sums[n + a.field_stride] = 0.0;
      }
    } else {
      current = *current_state;
      missing = missing_before;
    }

    float membrane = first_step ? 0.0f : *membrane_state;
    float refrac_until = first_step ? 0.0f : *refrac_state;
    float new_prospective;
    if constexpr (!Softmax) {
      float* last_spike_state = a.state + kLastSpike * a.field_stride + n;
      const float old_signal = first_step ? 0.0f : *signal;
      const float old_prospective = first_step ? 0.0f : *prospective;
      float last_spike = first_step ? 0.0f : *last_spike_state;
      const bool spiked = ttfs_neuron_step(current, missing, k, membrane, threshold, refrac_until,
                                           last_spike, new_prospective);
      *membrane_state = membrane;
      if (spiked || first_step) {
        *refrac_state = refrac_until;
        *last_spike_state = last_spike;
      }
      publish(a.v, s, a.node, a.out_offset, i, relu_signal(last_spike, k.dt), new_prospective,
              old_signal, old_prospective, first_step, t);
      record_first_spike(a.r.first_spike, n, spiked, first_step, k.tau);
      if (spiked) {
        spikes = 1;
        ops = a.r.fanout[i];
      }
    } else {
      // Steps 3-4, 9, 10; no reset and no refractory update (R stays 0).
      membrane = integrate(current, membrane, refrac_until, k);
      softmax_neuron_flags(current, missing, k, refrac_until, threshold, new_prospective);
      *membrane_state = membrane;
      if (first_step) *refrac_state = refrac_until;
      *prospective = new_prospective;
    }
  }
  if constexpr (!Softmax) write_block_partials(a.r, s, spikes, ops);
}

// One synapse group of a residual Add (an open node: Dense, Conv2D or
// DepthwiseConv2D), before the Add's integrate_kernel: adds this step's
// changes of its input to the Add's running sums (CPU: absorb_input_changes
// into the Add's sums, group after group), and passes its input's flags on
// under its own node index, where the Add reads them.
template <NodeKind Kind>
__global__ void __launch_bounds__(kBlock) add_group_kernel(const LayerArgs a) {
  const int64_t s = blockIdx.y;
  if (*a.v.done(s)) return;  // uniform over the block
  const int t = a.v.control->step;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= a.size) return;
  const bool changed = a.v.changed_step(s)[a.inbound] == t;
  const int64_t n = s * a.size + i;
  if (!changed) {
    if (t == 1 && a.first_group) a.sums[n] = a.sums[n + a.field_stride] = 0.0;
    return;
  }
  const bool start = t == 1 && a.first_group;
  double current_sum = start ? 0.0 : a.sums[n], missing_sum = start ? 0.0 : a.sums[n + a.field_stride];
  const InputEvents in{a.v.signal_of(s, a.in_offset), a.v.prospective_of(s, a.in_offset),
                       a.v.old_signal + s * a.v.row + a.in_offset,
                       a.v.old_prospective + s * a.v.row + a.in_offset,
                       a.v.stamp + s * a.v.row + a.in_offset,
                       a.cell_count ? a.cell_count + s * int64_t(a.g.in_h) * a.g.in_w : nullptr,
                       a.cell_list ? a.cell_list + s * int64_t(a.g.in_h) * a.g.in_w * a.g.in_c : nullptr,
                       t};
  add_input_events<Kind>(a.g, a.kernel, i, in, current_sum, missing_sum);
  a.sums[n] = current_sum;
  a.sums[n + a.field_stride] = missing_sum;
  if (i == 0) {  // (one writer per sample)
    a.v.changed_step(s)[a.node] = t;
    if (a.v.nonzero(s)[a.inbound]) a.v.nonzero(s)[a.node] = 1;
  }
}

// The stochastic softmax output, after integrate_kernel<_, true>: one thread
// per (sample, position) takes the softmax over the class axis in the CPU's
// order and draws one uniform per neuron (CPU softmax_step).
struct SoftmaxArgs {
  int positions, classes, size;
  int node;
  int64_t out_offset;
  const float* membrane;  // [sample][size]
  SampleView v;
  Recorder r;
  StepParams p;
};

__global__ void __launch_bounds__(kBlock) softmax_kernel(const SoftmaxArgs a) {
  const int64_t s = blockIdx.y;
  if (*a.v.done(s)) return;
  const int t = a.v.control->step;
  const bool first_step = t == 1;
  const int pos = blockIdx.x * kBlock + threadIdx.x;
  int spikes = 0;
  double ops = 0.0;
  if (pos < a.positions) {
    const StepConstants k = step_constants(a.p, t);
    const int base = pos * a.classes;
    const float* membrane = a.membrane + s * a.size + base;
    float v_max = -INFINITY;
    for (int c = 0; c < a.classes; ++c) v_max = v_max < membrane[c] ? membrane[c] : v_max;  // std::max
    float total = 0.0f;
    for (int c = 0; c < a.classes; ++c) total += softmax_exp(membrane[c] - v_max);
    const uint32_t sample = uint32_t(a.v.control->sample_offset + s);
    float* signal = a.v.signal_of(s, a.out_offset);
    for (int c = 0; c < a.classes; ++c) {
      const int i = base + c;
      const float u = softmax_uniform(a.p.seed, uint32_t(i), sample, uint32_t(t));
      const bool spiked = u <= softmax_exp(membrane[c] - v_max) / total;
      signal[i] = spiked ? 1.0f : 0.0f;
      record_first_spike(a.r.first_spike, s * a.size + i, spiked, first_step, k.tau);
      if (spiked) {
        ++spikes;
        ops += a.r.fanout[i];
        a.v.nonzero(s)[a.node] = 1;
      }
    }
    a.v.changed_step(s)[a.node] = t;  // the CPU marks the softmax output changed every step
  }
  write_block_partials(a.r, s, spikes, ops);
}

// MaxPooling2D (CPU maxpool_step_node): re-pool when the inbound changed,
// then maxpool_step on the signal and the sticky prospective map.
__global__ void __launch_bounds__(kBlock) maxpool_kernel(const LayerArgs a) {
  const int64_t s = blockIdx.y;
  if (*a.v.done(s)) return;
  const int t = a.v.control->step;
  const bool first_step = t == 1;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  int spikes = 0;
  double ops = 0.0;
  if (i < a.size) {
    const StepConstants k = step_constants(a.p, t);
    const Geometry& g = a.g;
    const int64_t n = s * a.size + i;
    float* pooled_state = a.state + kPooled * a.field_stride + n;
    float* pooled_p_state = a.state + kPooledProspective * a.field_stride + n;
    float* last_spike_state = a.state + kPoolLastSpike * a.field_stride + n;
    float* last_p_state = a.state + kPoolLastProspective * a.field_stride + n;
    float m, mp;
    if (a.v.changed_step(s)[a.inbound] == t) {
      const int pos = i / g.out_c, c = i - pos * g.out_c;
      const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
      max_pool_window(g, a.v.signal_of(s, a.in_offset), a.v.prospective_of(s, a.in_offset), oy, ox, c,
                      m, mp);
      *pooled_state = m;
      *pooled_p_state = mp;
    } else if (first_step) {
      m = mp = 0.0f;
      *pooled_state = 0.0f;
      *pooled_p_state = 0.0f;
    } else {
      m = *pooled_state;
      mp = *pooled_p_state;
    }
    float* signal = a.v.signal_of(s, a.out_offset) + i;
    float* prospective = a.v.prospective_of(s, a.out_offset) + i;
    const float old_signal = first_step ? 0.0f : *signal;
    const float old_prospective = first_step ? 0.0f : *prospective;
    float last_spike = first_step ? 0.0f : *last_spike_state;
    float last_prospective = first_step ? 0.0f : *last_p_state;
    const bool recorded = maxpool_step(m, k.tau, last_spike);
    if (mp != 0.0f) last_prospective = k.tau;
    *last_spike_state = last_spike;
    *last_p_state = last_prospective;
    publish(a.v, s, a.node, a.out_offset, i, relu_signal(last_spike, k.dt),
            relu_signal(last_prospective, k.dt), old_signal, old_prospective, first_step, t);
    record_first_spike(a.r.first_spike, n, recorded, first_step, k.tau);
    if (recorded) {
      spikes = 1;
      ops = a.r.fanout[i];
    }
  }
  write_block_partials(a.r, s, spikes, ops);
}

// Last per-node work of a step, one block per sample: spike counts and
// synaptic operations from the partial sums (fixed order), the class counts
// of the output, and early stop.
struct ReadoutArgs {
  SampleView v;
  StepParams p;
  int64_t out_offset;             // the last node's signal
  int classes;
  int layers;                     // spiking layers
  const int* layer_partial_offset;
  const int* layer_partial_blocks;
  const int* partial_spikes;
  const double* partial_ops;
  int partial_stride;
  int64_t* spike_counts;          // [sample][layers]
  double* synops;                 // [sample][steps]
  int* class_count;               // [sample][classes]
  int* counts;                    // [sample][classes][steps]
  int* stop_step;                 // [sample]
};

__global__ void __launch_bounds__(kReadoutBlock) readout_kernel(const ReadoutArgs a) {
  const int64_t s = blockIdx.x;
  if (*a.v.done(s)) return;
  const int t = a.v.control->step;
  const int steps = a.p.steps;
  const bool first_step = t == 1;

  double step_ops = 0.0;  // meaningful in thread 0
  for (int l = 0; l < a.layers; ++l) {
    const int64_t begin = s * a.partial_stride + a.layer_partial_offset[l];
    const int blocks = a.layer_partial_blocks[l];
    long long spikes = 0;
    double ops = 0.0;
    for (int b = threadIdx.x; b < blocks; b += kReadoutBlock) {
      spikes += a.partial_spikes[begin + b];
      ops += a.partial_ops[begin + b];
    }
    spikes = block_sum<kReadoutBlock>(spikes);
    ops = block_sum<kReadoutBlock>(ops);
    if (threadIdx.x == 0) {
      int64_t* count = a.spike_counts + s * a.layers + l;
      *count = (first_step ? 0 : *count) + spikes;
      step_ops += ops;  // layer by layer, as the CPU adds them
    }
  }
  if (threadIdx.x == 0) {
    a.synops[s * steps + (t - 1)] = step_ops;
    if (first_step) a.stop_step[s] = steps;
  }

  // Reading the output: count the steps at which each class's signal is on.
  const float* out = a.v.signal_of(s, a.out_offset);
  int* class_count = a.class_count + s * a.classes;
  int* counts = a.counts + s * int64_t(a.classes) * steps;
  bool fired = false;
  for (int c = threadIdx.x; c < a.classes; c += kReadoutBlock) {
    int count = first_step ? 0 : class_count[c];
    if (out[c] > 0.0f) {
      ++count;
      fired = true;
    }
    class_count[c] = count;
    counts[int64_t(c) * steps + (t - 1)] = count;
  }
  if (!a.p.early_stop) return;
  if (!__syncthreads_or(fired)) return;  // also makes class_count visible to the block
  // Early stop: this sample's results stay as they are after step t.
  const int rest = steps - t;
  for (int64_t e = threadIdx.x; e < int64_t(a.classes) * rest; e += kReadoutBlock) {
    const int c = int(e / rest);
    counts[int64_t(c) * steps + t + (e - int64_t(c) * rest)] = class_count[c];
  }
  for (int r = threadIdx.x; r < rest; r += kReadoutBlock) a.synops[s * steps + t + r] = 0.0;
  if (threadIdx.x == 0) {
    a.stop_step[s] = t;
    *a.v.done(s) = 1;
    atomicSub(&a.v.control->running, 1);
  }
}

__global__ void advance_step_kernel(Control* control) { control->step += 1; }

}  // namespace cuda
}  // namespace ttfs
