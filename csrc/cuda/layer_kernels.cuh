// The layer-major schedule (PERFORMANCE.md point 5; TTFS_CUDA_SCHEDULE=layer):
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
// integers, so every order gives the same double). The readout derives the
// class counts and the results' cut-off from these afterwards.
//
// The steps may be split into windows (StepWindow): every node runs a window,
// then every node the next one. Between windows a neuron's registers are
// saved to memory (WindowState) and restored, so the results do not depend
// on the windows. Windows bound the per-block totals (at most
// kMaxWindowSteps steps each), and with early stop they let a run end after
// the window in which every sample stopped (layer_stop_kernel): kernels skip
// the samples that stopped in an earlier window.
#pragma once

#include "step_kernels.cuh"

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
  Window g;
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
__device__ __forceinline__ void add_history_events(const Window& g, const float* __restrict__ kernel, int i,
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
__device__ __forceinline__ void fill_warp_scan_table(const Window& g, int i, int chunks, WarpScanTable& table) {
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
  bool finished = !valid || (last_spike > 0.0f && add_rn(last_spike, a.p.tau_refrac) > a.p.end_tau);
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
      finished = last_spike > 0.0f && add_rn(last_spike, a.p.tau_refrac) > a.p.end_tau;
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
  const Window& g = a.g;
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
