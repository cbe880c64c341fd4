// The layer-major schedule (PERFORMANCE.md point 5; EngineOptions::cuda_schedule = Layer):
// layer l at step t depends only on layer l-1 at step t, so each node runs
// its whole time loop in one launch, node after node. A neuron's state (V,
// theta, R, S, P and the double sums of I and M) stays in registers for all
// steps; what passes between nodes is each node's output *history*:
//
// * four bit planes per step, one bit per output element ([sample][plane]
//   [step][word]): any change, signal turned on, prospective flag changed,
//   prospective flag on after the step;
// * per element: the step its signal turned on (kNever if it never does) and
//   the values of its signal and prospective map when on;
// * per sample: the earliest such step (the next layer's input gate,
//   SEMANTICS.md step 2), and per step whether any element changed (so a
//   layer skips its fan-in scan at steps where its input is quiet, e.g. the
//   first layer after step 1).
//
// Every signal that a layer reads turns on once and stays on (input x*dt
// from step 1, "dt once fired", max-pool's sticky S; the softmax output is
// read by no layer), so "turned on" and its value describe it fully. A
// layer adds, at each step, the changes of its fan-in in increasing input
// index to running double sums: the CPU engine's order, so I, M and every
// spike equal the CPU's bit for bit (the same argument as synapse_gather.cuh).
//
// Thread i of a block row is output element blockIdx.x*blockDim.x + i, so a
// warp's 32 elements are one word of each plane: it writes a step's words
// from warp ballots, without atomics or clearing. Spike counts and synaptic
// operations per step are added up per block in shared memory and then
// into per-(sample, step) totals with integer-valued atomics (fan-outs are
// whole numbers, checked by validate_node, so every order gives the same
// double). The readout derives the class counts and the results' cut-off
// from these afterwards.
//
// The steps may be split into windows (StepWindow): every node runs a window,
// then every node the next one. Between windows a neuron's registers are
// saved to memory (WindowState) and restored, so the results do not depend
// on the windows. Windows bound the per-block totals (at most
// kMaxWindowSteps steps each), and with early stop they let a run end after
// the window in which every sample stopped (layer_stop_kernel): kernels skip
// the samples that stopped in an earlier window.
#pragma once

#include "kernel_common.cuh"
#include "synapse_gather.cuh"

namespace ttfs {
namespace cuda {

constexpr int kMaxWindowSteps = 1024;  // per-block step totals of a window live in shared memory
constexpr int kNever = 0x7f7f7f7f;    // "never on"; also what a 0x7f byte memset writes
constexpr int kPlanes = 4;
enum HistoryPlane { kAnyChange = 0, kSignalOn, kProspectiveChanged, kProspectiveOn };

// A node's output over the whole run, for the samples of a chunk.
struct History {
  uint32_t* planes;  // [sample][kPlanes][steps][words]
  int* on_step;      // [sample][size]
  float* on_value;   // [sample][size]: the signal once on
  float* p_value;    // [sample][size]: the prospective map when on
  int* first_on;     // [sample * first_on_stride]: earliest on_step of the sample
  int first_on_stride;
  int* changed;      // [sample][steps]: non-zero if any element changed at that step
  int size, words, steps;

  __device__ __forceinline__ uint32_t* plane(int64_t s, int p, int t) const {
    return planes + ((s * kPlanes + p) * steps + (t - 1)) * int64_t(words);
  }
  __device__ __forceinline__ bool changed_at(int64_t s, int t) const { return changed[s * steps + (t - 1)] != 0; }
};

// The steps a launch runs, first to last (1-based).
struct StepWindow {
  int first, last;
  __device__ __forceinline__ int count() const { return last - first + 1; }
};

// A node's neuron registers between windows: the running sums of I and M
// ([2][sample][size]) and float fields ([field][sample][size]); null when
// the run is one window. A kernel restores element e's registers at the
// start of a window (load) and saves them at its end (store), naming them in
// the same order both times. The step an element turned on (int) is kept as
// a float (exact: steps are below 2^24), -1 for kNever.
struct WindowState {
  double* sums;
  float* fields;
  int64_t stride;  // samples * size of the chunk's buffers

  template <typename... Registers>
  __device__ __forceinline__ void load(int64_t e, double& current_sum, double& missing_sum,
                                       Registers&... registers) const {
    current_sum = sums[e];
    missing_sum = sums[stride + e];
    load_fields(e, registers...);
  }
  template <typename... Registers>
  __device__ __forceinline__ void load_fields(int64_t e, Registers&... registers) const {
    int k = 0;
    (get(fields[k++ * stride + e], registers), ...);
  }
  template <typename... Registers>
  __device__ __forceinline__ void store(int64_t e, double current_sum, double missing_sum,
                                        const Registers&... registers) const {
    sums[e] = current_sum;
    sums[stride + e] = missing_sum;
    store_fields(e, registers...);
  }
  template <typename... Registers>
  __device__ __forceinline__ void store_fields(int64_t e, const Registers&... registers) const {
    int k = 0;
    (put(fields[k++ * stride + e], registers), ...);
  }

  __device__ __forceinline__ static void get(float field, float& value) { value = field; }
  __device__ __forceinline__ static void get(float field, int& step) { step = field < 0.0f ? kNever : int(field); }
  __device__ __forceinline__ static void put(float& field, float value) { field = value; }
  __device__ __forceinline__ static void put(float& field, int step) { field = step == kNever ? -1.0f : float(step); }
};
constexpr int kWindowFields = 8;  // the most any kernel keeps (layer_integrate_kernel, layer_maxpool_kernel)

// A sample that stopped in an earlier window (early stop) is skipped by
// every kernel of the later ones; `done` is null without early stop.
__device__ __forceinline__ bool sample_done(const int* done, int64_t s) { return done && done[s]; }

// What every layer-major kernel of a spiking node writes besides its history.
struct LayerRecords {
  float* first_spike;    // [sample][size]: tau of the first record, 0 = none; null: not recorded
  const double* fanout;  // [size]
  int* step_spikes;      // this layer's row of [sample][layers][steps]
  int64_t spikes_stride; // layers * steps
  double* step_ops;      // [sample][steps], all layers
};

struct LayerMajorArgs {
  Geometry g;
  int size;
  const float* kernel;      // Keras layout (weighted layers)
  const float* bias_dt;     // b * dt, or null
  const float* pool_count;  // AveragePooling2D: cells per output position
  History in, out;
  LayerRecords r;
  StepParams p;
  int64_t sample_offset;    // softmax: index of the chunk's first sample in the whole input
  uint8_t* out_on;          // softmax output: [sample][steps][size], the signal at each step
  int warp_chunks;          // > 0: the warps scan their fan-in together (warp_scan_chunks)
  StepWindow w;
  WindowState state;
  const int* done;          // [sample], or null without early stop
};

// ------------------------------------------------------------- helpers

// Writes step t's words of the output history from the warp's 32 elements
// (lane l = element 32*word + l). Every thread of the block must call it.
__device__ __forceinline__ void publish_history(const History& h, int64_t s, int t, int i, bool signal_on,
                                                bool p_changed, bool p_on) {
  const unsigned sig = __ballot_sync(0xffffffffu, signal_on);
  const unsigned pch = __ballot_sync(0xffffffffu, p_changed);
  const unsigned pon = __ballot_sync(0xffffffffu, p_on);
  if ((threadIdx.x & 31) == 0 && i < h.size) {
    const int w = i >> 5;
    h.plane(s, kAnyChange, t)[w] = sig | pch;
    h.plane(s, kSignalOn, t)[w] = sig;
    h.plane(s, kProspectiveChanged, t)[w] = pch;
    h.plane(s, kProspectiveOn, t)[w] = pon;
    if (sig | pch) h.changed[s * h.steps + (t - 1)] = 1;  // all writers store the same value
  }
}

// The block's earliest "signal on" step (shared memory), then the sample's.
// Every thread of the block must call these two.
__device__ __forceinline__ void clear_first_on(int& block_first_on) {
  if (threadIdx.x == 0) block_first_on = kNever;
  __syncthreads();
}
__device__ __forceinline__ void flush_first_on(const int& block_first_on, const History& out, int64_t s) {
  __syncthreads();
  if (threadIdx.x == 0 && block_first_on != kNever)
    atomicMin(out.first_on + s * out.first_on_stride, block_first_on);
}

// Per-block totals of one node's records per step of the window, and the
// block's earliest "signal on" step, in shared memory; also whether the
// node's input changed at each step of the window, read once at the start
// (a step then does not begin by waiting for a load from device memory).
struct BlockTotals {
  int spikes[kMaxWindowSteps];
  double ops[kMaxWindowSteps];
  uint8_t input_changed[kMaxWindowSteps];
  int first_on;

  __device__ __forceinline__ bool input_changed_at(const StepWindow& w, int t) const {
    return input_changed[t - w.first] != 0;
  }
};

// Every thread of the block must call these two.
__device__ __forceinline__ void clear_totals(BlockTotals& b, const StepWindow& w, const History& in, int64_t s) {
  for (int k = threadIdx.x; k < w.count(); k += blockDim.x) {
    b.spikes[k] = 0;
    b.ops[k] = 0.0;
    b.input_changed[k] = in.changed_at(s, w.first + k) ? 1 : 0;
  }
  clear_first_on(b.first_on);  // (its barrier also publishes the above)
}

// The start of a spiking node's block: false if its sample stopped in an
// earlier window (the block then returns at once; uniform over the block).
// Every thread of the block must call it.
__device__ __forceinline__ bool open_block(const LayerMajorArgs& a, BlockTotals& totals) {
  if (sample_done(a.done, blockIdx.y)) return false;
  clear_totals(totals, a.w, a.in, blockIdx.y);
  return true;
}

__device__ __forceinline__ void flush_totals(BlockTotals& b, const StepWindow& w, int steps,
                                             const LayerRecords& r, int64_t s, const History& out) {
  flush_first_on(b.first_on, out, s);
  for (int k = threadIdx.x; k < w.count(); k += blockDim.x)
    if (b.spikes[k] != 0) {
      const int t = w.first - 1 + k;  // 0-based step
      atomicAdd(r.step_spikes + s * r.spikes_stride + t, b.spikes[k]);
      atomicAdd(r.step_ops + s * steps + t, b.ops[k]);
    }
}

// A spike-train record of element i at step t.
__device__ __forceinline__ void add_record(BlockTotals& b, const StepWindow& w, const LayerRecords& r, int i,
                                           int t, float tau, float& first) {
  atomicAdd(&b.spikes[t - w.first], 1);
  atomicAdd(&b.ops[t - w.first], r.fanout[i]);
  if (first == 0.0f) first = tau;
}

// Element i's output summary once its time loop is done.
__device__ __forceinline__ void finish_element(BlockTotals& b, const History& out, const LayerRecords& r,
                                               int64_t s, int i, int on_step, float on_value, float p_value,
                                               float first) {
  const int64_t e = s * out.size + i;
  out.on_step[e] = on_step;
  out.on_value[e] = on_value;
  out.p_value[e] = p_value;
  if (on_step != kNever) atomicMin(&b.first_on, on_step);
  if (r.first_spike) r.first_spike[e] = first;
}

// One step's changes of a node's output, as a layer reading it sees them.
struct StepChanges {
  const uint32_t *any, *sig, *pch, *pon;
  const float *on_value, *p_value;

  __device__ __forceinline__ StepChanges(const History& in, int64_t s, int t)
      : any(in.plane(s, kAnyChange, t)), sig(in.plane(s, kSignalOn, t)),
        pch(in.plane(s, kProspectiveChanged, t)), pon(in.plane(s, kProspectiveOn, t)),
        on_value(in.on_value + s * in.size), p_value(in.p_value + s * in.size) {}

  // Input j (its bit in this step's words sig_word, pch_word, pon_word)
  // changed through a synapse of weight w: w * (signal when on) if it turned
  // on, |w| * (+-prospective value) if its flag flipped.
  __device__ __forceinline__ void add_bit(float w, int64_t j, uint32_t bit, uint32_t sig_word, uint32_t pch_word,
                                          uint32_t pon_word, double& current, double& missing) const {
    if (sig_word & bit) current += double(w) * double(on_value[j]);  // exact product
    if (pch_word & bit) {
      const float p = p_value[j];
      missing += double(fabsf(w)) * double((pon_word & bit) ? p : -p);
    }
  }
  __device__ __forceinline__ void add(float w, int64_t j, double& current, double& missing) const {
    const int64_t word = j >> 5;
    const uint32_t bit = 1u << (j & 31);
    const uint32_t pch_word = pch[word];
    add_bit(w, j, bit, sig[word], pch_word, (pch_word & bit) ? pon[word] : 0u, current, missing);
  }
};

// Adds the changes of neuron i's inputs at step t to its running sums, in
// increasing input index (for_each_input): w * (signal when on) for each
// input that turned on, |w| * (+-prospective value) for each flag that
// flipped. Dense and Conv2D scan a cell's channels a word of the
// any-change plane at a time.
template <NodeKind Kind>
__device__ __forceinline__ void add_history_events(const Geometry& g, const float* __restrict__ kernel, int i,
                                                   const History& in, int64_t s, int t, double& current,
                                                   double& missing) {
  const StepChanges changes(in, s, t);
  const uint32_t* any = changes.any;
  for_each_input<Kind>(
      g, i,
      [&](int64_t cell, auto&& each) {  // a cell's changed channels, in increasing order
        const int64_t end = cell + g.in_c;
        for (int64_t w = cell >> 5; w <= (end - 1) >> 5; ++w) {
          const int64_t base = w << 5;
          uint32_t bits = any[w];
          if (base < cell) bits &= 0xffffffffu << int(cell - base);
          if (base + 32 > end) bits &= 0xffffffffu >> int(base + 32 - end);
          while (bits) {
            const int b = __ffs(bits) - 1;
            bits &= bits - 1u;
            each(int(base + b - cell));
          }
        }
      },
      [&](int64_t j) { return ((any[j >> 5] >> (j & 31)) & 1u) != 0; },
      [&](int64_t j, int64_t w) { changes.add(*weight_at<Kind>(kernel, w), j, current, missing); });
}

// Dense and Conv2D layers whose warps share one output position (out_c a
// multiple of 32) and whose input cells are whole words (in_c a multiple of
// 32) scan their fan-in together: the warp loads the any-change words of all
// taps 32 at a time (one per lane, instead of every lane loading every word),
// and visits the changed ones in increasing input index, as for_each_input
// does. Returns the number of 32-word chunks, 0 where this does not apply.
constexpr int kMaxWarpWords = 256;  // fan-in words per warp (a shared-memory chunk buffer each)

inline int warp_scan_chunks(const Node& node) {
  const Geometry& g = node.geom;
  if (node.kind != NodeKind::Dense && node.kind != NodeKind::Conv2D) return 0;
  if (node.softmax || g.in_c % 32 != 0 || g.out_c % 32 != 0) return 0;
  if (node.kernel.size() >= size_t(1) << 31) return 0;  // WarpScanTable holds 32-bit weight indices
  const int64_t taps = node.kind == NodeKind::Conv2D ? int64_t(g.kernel_h) * g.kernel_w : 1;
  const int64_t words = taps * (g.in_c / 32);
  return words <= kMaxWarpWords ? int((words + 31) / 32) : 0;
}

// What a warp of such a layer scans, computed once per kernel (the fan-in
// does not change with the step): for each of its fan-in words q (tap q /
// words_per_cell, word q % words_per_cell of that tap's input cell), the
// word's index in a plane (-1: the tap lies outside the input), its first
// input element, and its first weight (for filter or unit 0).
struct WarpScanTable {
  int word[kMaxWarpWords];
  int element[kMaxWarpWords];
  int weight[kMaxWarpWords];
  uint32_t chunk[32];  // the 32 any-change words being visited
};

// Every thread of the block must call it. i: an element of the warp's output position.
template <NodeKind Kind>
__device__ __forceinline__ void fill_warp_scan_table(const Geometry& g, int i, int chunks, WarpScanTable& table) {
  const int lane = threadIdx.x & 31;
  const int words_per_cell = g.in_c >> 5;
  const int pos = i / g.multiplier;  // filters or units per output position
  const int taps = Kind == NodeKind::Conv2D ? g.kernel_h * g.kernel_w : 1;
  for (int q = lane; q < chunks * 32; q += 32) {
    const int tap = q / words_per_cell, c0 = (q - tap * words_per_cell) << 5;
    int64_t cell = -1;  // first element of the tap's input cell
    if (q < taps * words_per_cell) {
      if (Kind == NodeKind::Dense) {
        cell = int64_t(pos) * g.in_c;
      } else {
        const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
        const int ky = tap / g.kernel_w, kx = tap - ky * g.kernel_w;
        const int iy = oy * g.stride_h - g.pad_top + ky * g.dilation_h;
        const int ix = ox * g.stride_w - g.pad_left + kx * g.dilation_w;
        if (iy >= 0 && iy < g.in_h && ix >= 0 && ix < g.in_w) cell = (int64_t(iy) * g.in_w + ix) * g.in_c;
      }
    }
    table.word[q] = cell < 0 ? -1 : int((cell + c0) >> 5);
    table.element[q] = cell < 0 ? 0 : int(cell + c0);
    table.weight[q] = (Kind == NodeKind::Conv2D ? tap * g.in_c + c0 : c0) * g.multiplier;
  }
  __syncwarp();
}

// Adds the changes at step t of the warp's fan-in (as add_history_events,
// in the same order): the warp loads the any-change words 32 at a time, one
// per lane, and visits the non-zero ones. Every thread of the block must
// call it (the same number of times); only `active` threads add.
__device__ __forceinline__ void add_history_events_warp(const float* __restrict__ kernel, int f,
                                                        int per_position, const History& in, int64_t s, int t,
                                                        int chunks, WarpScanTable& table, bool active,
                                                        double& current, double& missing) {
  const int lane = threadIdx.x & 31;
  const StepChanges changes(in, s, t);
  for (int k = 0; k < chunks; ++k) {
    const int word_index = table.word[k * 32 + lane];
    const uint32_t word = word_index >= 0 ? changes.any[word_index] : 0u;
    table.chunk[lane] = word;
    unsigned changed = __ballot_sync(0xffffffffu, word != 0);
    __syncwarp();
    while (changed && active) {  // the warp's lanes agree on `changed`
      const int b = __ffs(changed) - 1, q = k * 32 + b;
      changed &= changed - 1u;
      const int w = table.word[q];
      const uint32_t sig_word = changes.sig[w], pch_word = changes.pch[w];
      const uint32_t pon_word = pch_word ? changes.pon[w] : 0u;
      const int64_t element = table.element[q];
      const float* weights = kernel + table.weight[q] + f;
      for (uint32_t bits = table.chunk[b]; bits; bits &= bits - 1u) {
        const int c = __ffs(bits) - 1;
        changes.add_bit(weights[int64_t(c) * per_position], element + c, 1u << c, sig_word, pch_word, pon_word,
                        current, missing);
      }
    }
    __syncwarp();  // the chunk buffer is rewritten next
  }
}

// I and M of neuron i from its sums (SEMANTICS.md steps 1-2, as the CPU's neuron pass).
template <NodeKind Kind>
__device__ __forceinline__ void input_of(double current_sum, double missing_sum, bool has_input, float bias,
                                         float cells, float& current, float& missing) {
  if constexpr (Kind == NodeKind::AveragePooling2D) {
    current = has_input ? float(current_sum) / cells : 0.0f;
    missing = float(missing_sum) / cells;
  } else {
    current = has_input ? float(current_sum) + bias : 0.0f;
    missing = float(missing_sum);
  }
}

}  // namespace cuda
}  // namespace ttfs
