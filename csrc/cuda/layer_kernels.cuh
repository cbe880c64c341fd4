// The kernels of the layer-major schedule (layer_history.cuh describes it
// and what passes between nodes), launched by layer_schedule.cu.
#pragma once

#include "layer_history.cuh"

namespace ttfs {
namespace cuda {

// ------------------------------------------------------------- kernels

// The input: x * dt from step 1 on, prospective map all zero.
__global__ void __launch_bounds__(kBlock) layer_input_kernel(const float* __restrict__ x, int64_t in_size,
                                                             float dt, const History out, StepWindow w,
                                                             const int* done) {
  __shared__ int block_first_on;
  const int64_t s = blockIdx.y;
  if (sample_done(done, s)) return;  // uniform over the block
  const int i = blockIdx.x * kBlock + threadIdx.x;
  clear_first_on(block_first_on);
  const float a = i < in_size ? mul_rn(x[s * in_size + i], dt) : 0.0f;  // x * dt, as the CPU
  const bool on = a != 0.0f;
  for (int t = w.first; t <= w.last; ++t) publish_history(out, s, t, i, t == 1 && on, false, false);
  if (i == 0 && w.first == 1) out.changed[s * out.steps] = 1;  // as in the CPU engine, the input "changes" at step 1
  if (i < in_size) {
    const int64_t e = s * in_size + i;
    out.on_step[e] = on ? 1 : kNever;
    out.on_value[e] = a;
    out.p_value[e] = 0.0f;
    if (on) atomicMin(&block_first_on, 1);
  }
  flush_first_on(block_first_on, out, s);
}

// Flatten, Reshape, ZeroPadding2D, Concatenate: each element's history is
// its source element's (zero padding: never on).
struct LayerGatherArgs {
  const History* histories;  // every node's, by node index
  const int* source_node;    // per element: inbound node index, -1 = zero padding
  const int* source_element; // per element: element in that node
  History out;
  StepWindow w;
  const int* done;
};

__global__ void __launch_bounds__(kBlock) layer_gather_kernel(const LayerGatherArgs a) {
  __shared__ int block_first_on;
  const int64_t s = blockIdx.y;
  if (sample_done(a.done, s)) return;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  clear_first_on(block_first_on);
  const int node = i < a.out.size ? a.source_node[i] : -1;
  History src{};
  int j = 0;
  if (node >= 0) {
    src = a.histories[node];
    j = a.source_element[i];
  }
  const uint32_t bit = 1u << (j & 31);
  for (int t = a.w.first; t <= a.w.last; ++t) {
    bool sig = false, pch = false, pon = false;
    if (node >= 0) {
      sig = (src.plane(s, kSignalOn, t)[j >> 5] & bit) != 0;
      pch = (src.plane(s, kProspectiveChanged, t)[j >> 5] & bit) != 0;
      pon = (src.plane(s, kProspectiveOn, t)[j >> 5] & bit) != 0;
    }
    publish_history(a.out, s, t, i, sig, pch, pon);
  }
  if (i < a.out.size) {
    const int64_t e = s * a.out.size + i;
    const int64_t from = s * int64_t(src.size) + j;
    const int on_step = node >= 0 ? src.on_step[from] : kNever;
    a.out.on_step[e] = on_step;
    a.out.on_value[e] = node >= 0 ? src.on_value[from] : 0.0f;
    a.out.p_value[e] = node >= 0 ? src.p_value[from] : 0.0f;
    if (on_step != kNever) atomicMin(&block_first_on, on_step);
  }
  flush_first_on(block_first_on, a.out, s);
}

// Dense, Conv2D, DepthwiseConv2D, AveragePooling2D with ReLU neurons: the
// whole run of each neuron (SEMANTICS.md steps 1-11 at every step). A
// neuron that fired and stays refractory to the end (as integrate_kernel
// tests it) has nothing observable left and reads no more input.
template <NodeKind Kind>
__global__ void __launch_bounds__(kBlock) layer_integrate_kernel(const LayerMajorArgs a) {
  __shared__ BlockTotals totals;
  constexpr bool kWarpScan = Kind == NodeKind::Dense || Kind == NodeKind::Conv2D;
  __shared__ WarpScanTable tables[kWarpScan ? kBlock / 32 : 1];
  if (!open_block(a, totals)) return;
  const int64_t s = blockIdx.y;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  const int steps = a.p.steps;
  const bool valid = i < a.size;
  // (a warp is all valid or all beyond the layer when it scans together: its size is a multiple of 32)
  WarpScanTable& table = tables[kWarpScan ? threadIdx.x >> 5 : 0];
  if (kWarpScan && a.warp_chunks > 0) fill_warp_scan_table<Kind>(a.g, valid ? i : 0, a.warp_chunks, table);
  float bias = 0.0f, cells = 1.0f;
  if (valid) {
    if (Kind == NodeKind::AveragePooling2D) cells = a.pool_count[i / a.g.out_c];
    else if (a.bias_dt) bias = a.bias_dt[i % a.g.out_c];
  }
  const int first_on = a.in.first_on[s * a.in.first_on_stride];
  double current_sum = 0.0, missing_sum = 0.0;
  float membrane = 0.0f, threshold = a.p.v0, refrac_until = 0.0f, last_spike = 0.0f, prospective = 0.0f;
  float signal = 0.0f, first = 0.0f;
  int on_step = kNever;
  const int64_t e = s * a.size + i;
  if (valid && a.w.first > 1)  // the registers at the end of the previous window
    a.state.load(e, current_sum, missing_sum, membrane, threshold, refrac_until, last_spike, prospective, signal,
                 first, on_step);
  bool finished = !valid || done_for_run(a.p, last_spike);
  for (int t = a.w.first; t <= a.w.last; ++t) {
    bool signal_on = false, p_changed = false;
    const bool input_changed = totals.input_changed_at(a.w, t);  // the same in the whole block
    // warps scan together while any neuron of the block still listens
    if (kWarpScan && a.warp_chunks > 0 && input_changed && __syncthreads_or(!finished))
      add_history_events_warp(a.kernel, i % a.g.multiplier, a.g.multiplier, a.in, s, t, a.warp_chunks, table,
                              !finished, current_sum, missing_sum);
    if (!finished) {
      const StepConstants k = step_constants(a.p, t);
      if (a.warp_chunks == 0 && input_changed)
        add_history_events<Kind>(a.g, a.kernel, i, a.in, s, t, current_sum, missing_sum);
      float current, missing;
      input_of<Kind>(current_sum, missing_sum, t >= first_on, bias, cells, current, missing);
      const float p_before = prospective;
      const bool spiked = ttfs_neuron_step(current, missing, k, membrane, threshold, refrac_until, last_spike,
                                           prospective);
      const float new_signal = relu_signal(last_spike, k.dt);
      signal_on = new_signal != signal;
      signal = new_signal;
      if (signal_on) on_step = t;
      p_changed = prospective != p_before;
      if (spiked) add_record(totals, a.w, a.r, i, t, k.tau, first);
      finished = done_for_run(a.p, last_spike);
    }
    publish_history(a.out, s, t, i, signal_on, p_changed, prospective != 0.0f);
  }
  if (valid) {
    finish_element(totals, a.out, a.r, s, i, on_step, a.p.dt, 1.0f, first);
    if (a.w.last < steps)
      a.state.store(e, current_sum, missing_sum, membrane, threshold, refrac_until, last_spike, prospective,
                    signal, first, on_step);
  }
  flush_totals(totals, a.w, steps, a.r, s, a.out);
}

// A Dense or Conv2D output layer with the stochastic softmax: one block per
// (position, sample), one thread per class, so that each step's softmax
// over the classes (in the CPU's order, by thread 0) sees every membrane.
// The last node: its signal at each step goes to out_on for the readout.
template <NodeKind Kind>
__global__ void __launch_bounds__(1024) layer_softmax_kernel(const LayerMajorArgs a) {
  __shared__ BlockTotals totals;
  __shared__ float membranes[1024];
  __shared__ float v_max, total;
  if (!open_block(a, totals)) return;  // (early stop refuses a softmax output; for symmetry)
  const int64_t s = blockIdx.y;
  const int classes = a.g.out_c;
  const int c = threadIdx.x;
  const int i = blockIdx.x * classes + c;
  const int steps = a.p.steps;
  const bool valid = c < classes;
  const float bias = valid && a.bias_dt ? a.bias_dt[c] : 0.0f;
  const int first_on = a.in.first_on[s * a.in.first_on_stride];
  const uint32_t sample = uint32_t(a.sample_offset + s);
  double current_sum = 0.0, missing_sum = 0.0;
  float membrane = 0.0f, first = 0.0f;
  const float refrac_until = 0.0f;  // no refractory update: R stays 0
  const int64_t e = s * a.size + i;
  if (valid && a.w.first > 1)  // the registers at the end of the previous window
    a.state.load(e, current_sum, missing_sum, membrane, first);
  for (int t = a.w.first; t <= a.w.last; ++t) {
    const StepConstants k = step_constants(a.p, t);
    if (valid) {
      if (totals.input_changed_at(a.w, t))
        add_history_events<Kind>(a.g, a.kernel, i, a.in, s, t, current_sum, missing_sum);
      float current, missing;
      input_of<Kind>(current_sum, missing_sum, t >= first_on, bias, 1.0f, current, missing);
      membrane = integrate(current, membrane, refrac_until, k);  // steps 3-4 (9-10 reach no one)
      membranes[c] = membrane;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float m = -INFINITY;
      for (int q = 0; q < classes; ++q) m = m < membranes[q] ? membranes[q] : m;  // std::max
      float sum = 0.0f;
      for (int q = 0; q < classes; ++q) sum += softmax_exp(membranes[q] - m);
      v_max = m;
      total = sum;
    }
    __syncthreads();
    if (valid) {
      const float u = softmax_uniform(a.p.seed, uint32_t(i), sample, uint32_t(t));
      const bool spiked = u <= softmax_exp(membrane - v_max) / total;
      a.out_on[(s * steps + (t - 1)) * a.size + i] = spiked ? 1 : 0;
      if (spiked) add_record(totals, a.w, a.r, i, t, k.tau, first);
    }
    __syncthreads();  // membranes, v_max and total are rewritten by the next step
  }
  if (valid && a.r.first_spike) a.r.first_spike[e] = first;
  if (valid && a.w.last < steps) a.state.store(e, current_sum, missing_sum, membrane, first);
  flush_totals(totals, a.w, steps, a.r, s, a.out);
}

// MaxPooling2D (CPU maxpool_step_node): at each step the window maximum of
// the input's signal and prospective map as they are after that step.
__global__ void __launch_bounds__(kBlock) layer_maxpool_kernel(const LayerMajorArgs a) {
  __shared__ BlockTotals totals;
  if (!open_block(a, totals)) return;
  const int64_t s = blockIdx.y;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  const int steps = a.p.steps;
  const bool valid = i < a.size;
  const Geometry& g = a.g;
  const int pos = valid ? i / g.out_c : 0, c = valid ? i - pos * g.out_c : 0;
  const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
  const int* in_on_step = a.in.on_step + s * a.in.size;
  const float* in_on_value = a.in.on_value + s * a.in.size;
  const float* in_p_value = a.in.p_value + s * a.in.size;
  float last_spike = 0.0f, last_prospective = 0.0f, signal = 0.0f, prospective = 0.0f, first = 0.0f;
  float m = 0.0f, mp = 0.0f;  // the pooled input (0 while the input is all zero)
  int on_step = kNever;
  const int64_t e = s * a.size + i;
  if (valid && a.w.first > 1)  // the registers at the end of the previous window
    a.state.load_fields(e, last_spike, last_prospective, signal, prospective, first, m, mp, on_step);
  for (int t = a.w.first; t <= a.w.last; ++t) {
    bool signal_on = false, p_changed = false;
    if (valid) {
      const StepConstants k = step_constants(a.p, t);
      const uint32_t* pon = a.in.plane(s, kProspectiveOn, t);
      if (totals.input_changed_at(a.w, t))  // re-pool over the input's values after step t
        max_pool_window_of(
            g, oy, ox, c, [&](int64_t j) { return in_on_step[j] <= t ? in_on_value[j] : 0.0f; },
            [&](int64_t j) { return (pon[j >> 5] >> (j & 31)) & 1u ? in_p_value[j] : 0.0f; }, m, mp);
      const bool recorded = maxpool_step(m, k.tau, last_spike);
      if (mp != 0.0f) last_prospective = k.tau;
      const float new_signal = relu_signal(last_spike, k.dt);
      const float new_prospective = relu_signal(last_prospective, k.dt);
      signal_on = new_signal != signal;
      p_changed = new_prospective != prospective;
      signal = new_signal;
      prospective = new_prospective;
      if (signal_on) on_step = t;
      if (recorded) add_record(totals, a.w, a.r, i, t, k.tau, first);
    }
    publish_history(a.out, s, t, i, signal_on, p_changed, prospective != 0.0f);
  }
  if (valid) {
    finish_element(totals, a.out, a.r, s, i, on_step, a.p.dt, a.p.dt, first);
    if (a.w.last < steps)
      a.state.store_fields(e, last_spike, last_prospective, signal, prospective, first, m, mp, on_step);
  }
  flush_totals(totals, a.w, steps, a.r, s, a.out);
}

// Whether class c of sample s is on (signal > 0) at step t: from the last
// node's history, or for a softmax output from its signal per step.
__device__ __forceinline__ bool output_on(const History& last, const uint8_t* out_on, int classes, int steps,
                                          int64_t s, int c, int t) {
  if (out_on) return out_on[(s * steps + (t - 1)) * classes + c] != 0;
  const int64_t e = s * last.size + c;
  return last.on_step[e] <= t && last.on_value[e] > 0.0f;
}

// Early stop, after each window, one thread per sample: a sample still
// running stops at the first step of the window at which any class is on
// (early stop refuses a softmax output, so the history tells).
struct LayerStopArgs {
  History last;
  int classes;
  StepWindow w;
  int samples;
  int* done;       // [sample]
  int* stop_step;  // [sample]: written where done is set
  int* running;    // samples not yet stopped
};

__global__ void __launch_bounds__(kReadoutBlock) layer_stop_kernel(const LayerStopArgs a) {
  const int64_t s = int64_t(blockIdx.x) * kReadoutBlock + threadIdx.x;
  if (s >= a.samples || a.done[s]) return;
  for (int t = a.w.first; t <= a.w.last; ++t)
    for (int c = 0; c < a.classes; ++c)
      if (output_on(a.last, nullptr, a.classes, 0, s, c, t)) {
        a.stop_step[s] = t;
        a.done[s] = 1;
        atomicSub(a.running, 1);
        return;
      }
}

// After the last window, one block per sample: class counts, spike counts
// and synaptic operations up to the stop step.
struct LayerReadoutArgs {
  History last;             // the last node's history ...
  const uint8_t* out_on;    // ... or, for a softmax output, its signal per step
  int classes, steps, layers;
  const int* done;          // early stop: [sample], the samples layer_stop_kernel stopped; else null
  const int* step_spikes;   // [sample][layers][steps]
  const double* step_ops;   // [sample][steps]
  int64_t* spike_counts;    // [sample][layers]
  double* synops;           // [sample][steps]
  int* counts;              // [sample][classes][steps]
  int* stop_step;           // [sample]: read where done, written
};

__global__ void __launch_bounds__(kReadoutBlock) layer_readout_kernel(const LayerReadoutArgs a) {
  __shared__ int stop;
  const int64_t s = blockIdx.x;
  const int steps = a.steps;
  auto on = [&](int c, int t) { return output_on(a.last, a.out_on, a.classes, steps, s, c, t); };
  if (threadIdx.x == 0) {
    stop = sample_done(a.done, s) ? a.stop_step[s] : steps;
    a.stop_step[s] = stop;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < a.classes; c += kReadoutBlock) {
    int count = 0;
    int* row = a.counts + (s * a.classes + c) * int64_t(steps);
    for (int t = 1; t <= steps; ++t) {
      if (t <= stop && on(c, t)) ++count;
      row[t - 1] = count;
    }
  }
  for (int l = threadIdx.x; l < a.layers; l += kReadoutBlock) {
    const int* row = a.step_spikes + (s * a.layers + l) * int64_t(steps);
    long long total = 0;
    for (int t = 0; t < stop; ++t) total += row[t];
    a.spike_counts[s * a.layers + l] = total;
  }
  for (int t = threadIdx.x; t < steps; t += kReadoutBlock)
    a.synops[s * steps + t] = t < stop ? a.step_ops[s * steps + t] : 0.0;
}

// Early stop: first-spike times recorded after a sample's stop step are dropped.
__global__ void __launch_bounds__(kBlock) drop_spikes_after_stop_kernel(float* first_spike, int size,
                                                                        const int* stop_step, StepParams p) {
  const int64_t s = blockIdx.y;
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= size) return;
  const float stop_tau = step_constants(p, stop_step[s]).tau;
  float& first = first_spike[s * size + i];
  if (first > stop_tau) first = 0.0f;
}

}  // namespace cuda
}  // namespace ttfs
