#include "engine_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#define TTFS_X86 1
#include <immintrin.h>
#endif

// The kernels are compiled once per instruction set, inside the entry points
// that carry the target attribute: everything they call must be inlined there.
#if defined(__GNUC__)
#define TTFS_KERNEL inline __attribute__((always_inline))
#else
#define TTFS_KERNEL inline
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/neuron_step.h"
#include "../core/philox.h"
#include "../core/synapse.h"

namespace ttfs {

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

namespace {

// Per-neuron flags of one step (32 bits wide, as the neuron state, so that
// the neuron pass vectorises without packing).
using Flags = uint32_t;
constexpr Flags kSpiked = 1, kChanged = 2;

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

// Input element j's change since the sums last saw it (false: none), which
// it marks seen; counts the change in non-zero input elements.
TTFS_KERNEL bool take_change(const InputChanges& c, int64_t j, InputEvent& e, int64_t& nonzero) {
  const float a = c.signal[j], a_seen = c.seen_signal[j];
  const float p = c.prospective[j], p_seen = c.seen_prospective[j];
  e = InputEvent{j, a - a_seen, p - p_seen, a != a_seen, p != p_seen};
  nonzero += int64_t(a != 0.0f) - int64_t(a_seen != 0.0f);
  c.seen_signal[j] = a;
  c.seen_prospective[j] = p;
  return e.signal || e.prospective;
}

// Where a scatter takes this step's events from, in increasing input index
// (the sums take them in that order): the changes themselves, taken as they
// are visited (one thread) ...
struct ChangesAsEvents {
  const InputChanges& c;
  int64_t nonzero = 0;
  size_t size() const { return c.count; }
  TTFS_KERNEL bool get(size_t n, InputEvent& e) { return take_change(c, c.changed[n], e, nonzero); }
};
// ... or a list of them taken before (threads sharing the layer).
struct EventList {
  const InputEvent* events;
  size_t count;
  size_t size() const { return count; }
  TTFS_KERNEL bool get(size_t n, InputEvent& e) const {
    e = events[n];
    return true;
  }
};

// The events of this step as a list; returns the change in non-zero input elements.
int64_t collect_events(const InputChanges& c, std::vector<InputEvent>& events) {
  events.clear();
  int64_t nonzero = 0;
  InputEvent e;
  for (size_t n = 0; n < c.count; ++n)
    if (take_change(c, c.changed[n], e, nonzero)) events.push_back(e);
  return nonzero;
}

// A layer's weights as its scatter reads them: the kernel in Keras layout,
// or, where `rows`, a Conv2D's in row layout (synapse.h).
struct LayerWeights {
  const float* w;
  bool rows;
};

// scatter_change, or scatter_conv_rows where the weights are in row layout.
template <NodeKind Kind, bool Signal, bool Prospective, typename Range>
TTFS_KERNEL void scatter_one(const Geometry& g, const LayerWeights& lw, const InputEvent& e, double* cur,
                             double* miss, const Range& range) {
  if (Kind == NodeKind::Conv2D && lw.rows)
    scatter_conv_rows<Signal, Prospective>(g, lw.w, e.j, e.da, e.dp, cur, miss, range);
  else
    scatter_change<Kind, Signal, Prospective>(g, lw.w, e.j, e.da, e.dp, cur, miss, range);
}

// Scatters the events into the sums in `range` (one walk over the
// connections of an element whose signal and prospective flag both changed,
// as when it fires).
template <NodeKind Kind, typename Source, typename Range>
TTFS_KERNEL void scatter_kind(const Node& node, const LayerWeights& lw, Source& events, double* cur,
                              double* miss, const Range& range) {
  const Geometry& g = node.geom;
  InputEvent e;
  for (size_t n = 0; n < events.size(); ++n) {
    if (!events.get(n, e)) continue;
    if (e.signal && e.prospective) scatter_one<Kind, true, true>(g, lw, e, cur, miss, range);
    else if (e.signal) scatter_one<Kind, true, false>(g, lw, e, cur, miss, range);
    else scatter_one<Kind, false, true>(g, lw, e, cur, miss, range);
  }
}

template <typename Source, typename Range>
TTFS_KERNEL void scatter_dispatch(const Node& node, const LayerWeights& lw, Source& events, double* cur,
                                  double* miss, const Range& range) {
  switch (node.kind) {
    case NodeKind::Dense: return scatter_kind<NodeKind::Dense>(node, lw, events, cur, miss, range);
    case NodeKind::Conv2D: return scatter_kind<NodeKind::Conv2D>(node, lw, events, cur, miss, range);
    case NodeKind::DepthwiseConv2D:
      return scatter_kind<NodeKind::DepthwiseConv2D>(node, lw, events, cur, miss, range);
    case NodeKind::AveragePooling2D:
      return scatter_kind<NodeKind::AveragePooling2D>(node, lw, events, cur, miss, range);
    default: return;  // not an integrating layer
  }
}

// The synaptic scatter is most of the arithmetic: it is compiled a second
// time for AVX2 and chosen at run time, so one binary stays portable. absorb:
// one thread takes the changes and scatters them into all sums (returns the
// change in non-zero input elements); scatter: a thread's share of a list.
int64_t absorb_generic(const Node& node, const LayerWeights& lw, const InputChanges& c, double* cur,
                       double* miss) {
  ChangesAsEvents events{c};
  scatter_dispatch(node, lw, events, cur, miss, AllOutputs{});
  return events.nonzero;
}
void scatter_generic(const Node& node, const LayerWeights& lw, const EventList& events, double* cur,
                     double* miss, const OutputRange& range) {
  scatter_dispatch(node, lw, events, cur, miss, range);
}
#ifdef TTFS_X86
__attribute__((target("avx2"))) int64_t absorb_avx2(const Node& node, const LayerWeights& lw,
                                                    const InputChanges& c, double* cur, double* miss) {
  ChangesAsEvents events{c};
  scatter_dispatch(node, lw, events, cur, miss, AllOutputs{});
  return events.nonzero;
}
__attribute__((target("avx2"))) void scatter_avx2(const Node& node, const LayerWeights& lw,
                                                  const EventList& events, double* cur, double* miss,
                                                  const OutputRange& range) {
  scatter_dispatch(node, lw, events, cur, miss, range);
}
#endif
// A layer's arrays for the neuron pass.
struct LayerArrays {
  const double* current_sum;
  const double* missing_sum;
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

// ttfs_neuron_step over n neurons of a layer (the arrays start at the first),
// branch-free so that it vectorises; flags[i] says what neuron i did. `bias_dt`
// (b * dt) and `pool_count` are given per neuron. A neuron whose refractory
// period outlasts the run goes through it too: its membrane stays 0 below
// threshold and nothing observable changes. HasInput: step 2, while the
// sample's input is all zero, I = 0 (no bias either).
template <bool AveragePool, bool HasInput>
TTFS_KERNEL void neuron_run(const double* __restrict current_sum, const double* __restrict missing_sum,
                            const float* __restrict bias_dt, const float* __restrict count,
                            float* __restrict membrane, float* __restrict threshold,
                            float* __restrict refrac_until, float* __restrict last_spike,
                            float* __restrict prospective, float* __restrict signal,
                            Flags* __restrict flags, int64_t n, const StepConstants k) {
  for (int64_t i = 0; i < n; ++i) {
    // 1-2: I and M from the running sums (average pooling divides the float32 sum)
    float current = AveragePool ? float(current_sum[i]) / count[i] : float(current_sum[i]) + bias_dt[i];
    if (!HasInput) current = 0.0f;
    const float missing = AveragePool ? float(missing_sum[i]) / count[i] : float(missing_sum[i]);
    float v = membrane[i], theta = threshold[i], r = refrac_until[i], s = last_spike[i];
    float p = prospective[i];
    const float before_p = p;
    const bool spiked = ttfs_neuron_step(current, missing, k, v, theta, r, s, p);
    const float out = relu_signal(s, k.dt);
    const bool changed = (out != signal[i]) | (before_p != p);
    membrane[i] = v;
    threshold[i] = theta;
    refrac_until[i] = r;
    last_spike[i] = s;
    prospective[i] = p;
    signal[i] = out;
    flags[i] = (spiked ? kSpiked : 0) | (changed ? kChanged : 0);
  }
}

// Appends the neurons flagged in flags[0, n) (neuron begin + i) to `out`.
// Flags are sparse (a few percent per step), so quiet runs are skipped whole.
TTFS_KERNEL void scan_flags_generic(const Flags* flags, int64_t begin, int64_t n, const PassOutput& out) {
  for (int64_t i = 0; i < n; ++i) {
    if (i + 4 <= n && (flags[i] | flags[i + 1] | flags[i + 2] | flags[i + 3]) == 0) {
      i += 3;
      continue;
    }
    if (flags[i] & kChanged) out.changed.push_back(begin + i);
    if (flags[i] & kSpiked) out.spiked.push_back(begin + i);
  }
}
#ifdef TTFS_X86
__attribute__((target("avx2"))) TTFS_KERNEL void scan_flags_avx2(const Flags* flags, int64_t begin, int64_t n,
                                                            const PassOutput& out) {
  const __m256i ch = _mm256_set1_epi32(int(kChanged)), sp = _mm256_set1_epi32(int(kSpiked));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(flags + i));
    if (_mm256_testz_si256(v, v)) continue;
    const __m256i c = _mm256_cmpeq_epi32(_mm256_and_si256(v, ch), ch);
    const __m256i f = _mm256_cmpeq_epi32(_mm256_and_si256(v, sp), sp);
    for (uint32_t m = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(c))); m; m &= m - 1)
      out.changed.push_back(begin + i + __builtin_ctz(m));
    for (uint32_t m = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(f))); m; m &= m - 1)
      out.spiked.push_back(begin + i + __builtin_ctz(m));
  }
  scan_flags_generic(flags + i, begin + i, n - i, out);
}
#endif

// The neuron pass of a layer in blocks, each scanned for flags while they
// are still in L1.
constexpr int64_t kBlock = 256;

template <bool AveragePool, bool HasInput, typename Scan>
TTFS_KERNEL void pass_blocks(const LayerArrays& a, int64_t n, const StepConstants& k, const PassOutput& out,
                        Scan scan) {
  Flags flags[kBlock];
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t count = std::min(kBlock, n - begin);
    const int64_t b = begin;
    neuron_run<AveragePool, HasInput>(a.current_sum + b, a.missing_sum + b, a.bias_dt + b,
                                      AveragePool ? a.pool_count + b : nullptr, a.membrane + b,
                                      a.threshold + b, a.refrac_until + b, a.last_spike + b,
                                      a.prospective + b, a.signal + b, flags, count, k);
    scan(flags, begin, count, out);
  }
}

template <typename Scan>
TTFS_KERNEL void neuron_pass_dispatch(const LayerArrays& a, int64_t n, bool has_input, const StepConstants& k,
                                 const PassOutput& out, Scan scan) {
  if (a.pool_count) {
    if (has_input) pass_blocks<true, true>(a, n, k, out, scan);
    else pass_blocks<true, false>(a, n, k, out, scan);
  } else {
    if (has_input) pass_blocks<false, true>(a, n, k, out, scan);
    else pass_blocks<false, false>(a, n, k, out, scan);
  }
}

void neuron_pass_generic(const LayerArrays& a, int64_t n, bool has_input, const StepConstants& k,
                         const PassOutput& out) {
  neuron_pass_dispatch(a, n, has_input, k, out, scan_flags_generic);
}

#ifdef TTFS_X86
__attribute__((target("avx2"))) void neuron_pass_avx2(const LayerArrays& a, int64_t n, bool has_input,
                                                      const StepConstants& k, const PassOutput& out) {
  struct Scan {
    __attribute__((target("avx2"))) void operator()(const Flags* f, int64_t b, int64_t c,
                                                    const PassOutput& o) const {
      scan_flags_avx2(f, b, c, o);
    }
  };
  neuron_pass_dispatch(a, n, has_input, k, out, Scan{});
}
#endif

// The kernels above, picked once for this CPU. TTFS_CPU_KERNELS=generic
// (read at import) forces the portable ones, e.g. to test them on an AVX2
// machine: other CPUs (aarch64 wheels) run nothing else.
bool use_avx2() {
#ifdef TTFS_X86
  const char* forced = std::getenv("TTFS_CPU_KERNELS");
  return __builtin_cpu_supports("avx2") && !(forced && std::strcmp(forced, "generic") == 0);
#else
  return false;
#endif
}

using AbsorbFn = int64_t (*)(const Node&, const LayerWeights&, const InputChanges&, double*, double*);
using ScatterFn = void (*)(const Node&, const LayerWeights&, const EventList&, double*, double*,
                          const OutputRange&);
using NeuronPassFn = void (*)(const LayerArrays&, int64_t, bool, const StepConstants&, const PassOutput&);
#ifdef TTFS_X86
const bool kAvx2 = use_avx2();
const AbsorbFn absorb = kAvx2 ? absorb_avx2 : absorb_generic;
const ScatterFn scatter = kAvx2 ? scatter_avx2 : scatter_generic;
const NeuronPassFn neuron_pass = kAvx2 ? neuron_pass_avx2 : neuron_pass_generic;
#else
const AbsorbFn absorb = absorb_generic;
const ScatterFn scatter = scatter_generic;
const NeuronPassFn neuron_pass = neuron_pass_generic;
#endif

// What the spiking neurons of one layer produced at one step.
struct StepRecord {
  float* first_spike;    // this sample's first-spike times of the layer
  const double* fanout;  // synaptic operations per spike
  int64_t spikes;
  double synops;
};

// State of one node for the sample a thread is simulating.
struct NodeState {
  std::vector<float> signal, prospective;  // a_out, p_out
  bool changed = false;                    // did signal or prospective change this step
  std::vector<int64_t> changed_list;       // ... and where
  std::vector<uint8_t> recorded;           // MaxPooling2D, softmax: spike-train record non-zero this step
  // Integrating layers: input already scattered, and the sums it produced.
  std::vector<float> seen_signal, seen_prospective;
  std::vector<double> current_sum, missing_sum;
  int64_t nonzero_inputs = 0;
  std::vector<float> membrane, threshold, refrac_until, last_spike;
  // MaxPooling2D: pooled input and the spike time of its prospective map.
  std::vector<float> pooled, pooled_prospective, last_prospective;
};

// Simulates one sample at a time. `threads` > 1: the threads share each
// sample's large layers (split by output range in the scatter, by neuron
// blocks in the neuron pass), for batches smaller than the thread count.
class SampleRunner {
 public:
  SampleRunner(const Network& net, const SimConfig& cfg, const std::vector<int>& spiking,
               const std::vector<int>& slot, const std::vector<CpuNodeTables>& tables, int threads = 1,
               SharePolicy policy = {})
      : net_(net), cfg_(cfg), spiking_(spiking), slot_(slot), tables_(tables),
        state_(net.nodes.size()), threads_(threads), policy_(policy), shares_(size_t(threads)) {
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      NodeState& s = state_[i];
      s.signal.resize(node.size);
      s.prospective.resize(node.size);
      if (node.is_spiking()) s.recorded.resize(node.size);
      if (node.integrates()) {
        const int64_t in = node.geom.in_size();
        s.seen_signal.resize(in);
        s.seen_prospective.resize(in);
        s.current_sum.resize(node.size);
        s.missing_sum.resize(node.size);
        s.membrane.resize(node.size);
        s.threshold.resize(node.size);
        s.refrac_until.resize(node.size);
        s.last_spike.resize(node.size);
      } else if (node.kind == NodeKind::MaxPooling2D) {
        s.pooled.resize(node.size);
        s.pooled_prospective.resize(node.size);
        s.last_spike.resize(node.size);
        s.last_prospective.resize(node.size);
      }
    }
    class_count_.resize(net.num_classes());
    end_tau_ = float(cfg.steps) * cfg.dt;
    softmax_scratch_.resize(net.nodes.back().size);
  }

  void run(const float* x, int64_t sample, int64_t row, const ResultViews& out) {
    reset();
    const int64_t classes = net_.num_classes();
    int32_t* counts = out.counts + row * classes * cfg_.steps;
    double* synops = out.synops + row * cfg_.steps;
    int64_t* spikes = out.spike_counts + row * int64_t(spiking_.size());
    std::fill(synops, synops + cfg_.steps, 0.0);
    for (size_t l = 0; l < spiking_.size(); ++l) {
      const int64_t size = net_.nodes[spiking_[l]].size;
      if (!out.first_spike.empty())
        std::fill(out.first_spike[l] + row * size, out.first_spike[l] + (row + 1) * size, 0.0f);
      spikes[l] = 0;
    }
    int stop = cfg_.steps;
    for (int t = 1; t <= cfg_.steps; ++t) {
      const StepConstants k = cfg_.step(t);
      for (size_t i = 0; i < net_.nodes.size(); ++i) {
        const Node& node = net_.nodes[i];
        switch (node.kind) {
          case NodeKind::Input: input_step(x, t, k); break;
          case NodeKind::Gather: gather_step(node, state_[i]); break;
          case NodeKind::MaxPooling2D: maxpool_step_node(node, state_[i], k); break;
          default: {
            StepRecord rec{out.first_spike.empty() ? nullptr : out.first_spike[slot_[i]] + row * node.size,
                           node.fanout.data(), 0, 0.0};
            if (integrate_step(node, state_[i], k, sample, t, rec)) {
              spikes[slot_[i]] += rec.spikes;
              synops[t - 1] += rec.synops;
              break;
            }
          }
        }
        if (node.kind == NodeKind::MaxPooling2D || node.softmax)
          record(node, i, k, row, out, synops[t - 1], spikes);
      }
      // Reading the output: count the steps at which each class's signal is on.
      const NodeState& last = state_.back();
      bool fired = false;
      for (int64_t c = 0; c < classes; ++c) {
        if (last.signal[c] > 0.0f) {
          ++class_count_[c];
          fired = true;
        }
        counts[c * cfg_.steps + (t - 1)] = class_count_[c];
      }
      if (cfg_.early_stop && fired) {
        stop = t;
        for (int64_t c = 0; c < classes; ++c)
          std::fill(counts + c * cfg_.steps + t, counts + (c + 1) * cfg_.steps, class_count_[c]);
        break;
      }
    }
    out.stop_step[row] = stop;
  }

 private:
  void reset() {
    for (size_t i = 0; i < net_.nodes.size(); ++i) {
      NodeState& s = state_[i];
      std::fill(s.signal.begin(), s.signal.end(), 0.0f);
      std::fill(s.prospective.begin(), s.prospective.end(), 0.0f);
      s.changed = false;
      s.changed_list.clear();
      std::fill(s.seen_signal.begin(), s.seen_signal.end(), 0.0f);
      std::fill(s.seen_prospective.begin(), s.seen_prospective.end(), 0.0f);
      std::fill(s.current_sum.begin(), s.current_sum.end(), 0.0);
      std::fill(s.missing_sum.begin(), s.missing_sum.end(), 0.0);
      s.nonzero_inputs = 0;
      std::fill(s.membrane.begin(), s.membrane.end(), 0.0f);
      std::fill(s.threshold.begin(), s.threshold.end(), cfg_.v_thresh);
      std::fill(s.refrac_until.begin(), s.refrac_until.end(), 0.0f);
      std::fill(s.last_spike.begin(), s.last_spike.end(), -1.0f);
      std::fill(s.last_prospective.begin(), s.last_prospective.end(), -1.0f);
      std::fill(s.pooled.begin(), s.pooled.end(), 0.0f);
      std::fill(s.pooled_prospective.begin(), s.pooled_prospective.end(), 0.0f);
    }
    std::fill(class_count_.begin(), class_count_.end(), 0);
  }

  // The input is not spiking: x * dt on every step, prospective map all zero.
  void input_step(const float* x, int t, const StepConstants& k) {
    NodeState& s = state_[0];
    s.changed_list.clear();
    s.changed = (t == 1);
    if (t != 1) return;
    for (size_t j = 0; j < s.signal.size(); ++j) {
      s.signal[j] = x[j] * k.dt;
      if (s.signal[j] != 0.0f) s.changed_list.push_back(int64_t(j));
    }
  }

  void gather_step(const Node& node, NodeState& s) {
    s.changed_list.clear();
    s.changed = false;
    bool any = false;
    for (int src : node.inbound) any = any || state_[src].changed;
    if (!any) return;
    for (int64_t i = 0; i < node.size; ++i) {
      const int src = node.gather_input[i];
      if (src < 0) continue;  // zero padding stays zero
      const NodeState& in = state_[node.inbound[src]];
      const float a = in.signal[node.gather_element[i]];
      const float p = in.prospective[node.gather_element[i]];
      if (a != s.signal[i] || p != s.prospective[i]) s.changed_list.push_back(i);
      s.signal[i] = a;
      s.prospective[i] = p;
    }
    s.changed = !s.changed_list.empty();
  }

  // Scatter what changed in the inbound signal and prospective map since the
  // last step into the running sums of L(a_in) (without bias) and L_abs(p_in).
  void absorb_input_changes(const Node& node, NodeState& s) {
    const NodeState& in = state_[node.inbound[0]];
    if (in.changed_list.empty()) return;
    const InputChanges changes{in.signal.data(), in.prospective.data(), in.changed_list.data(),
                               in.changed_list.size(), s.seen_signal.data(), s.seen_prospective.data()};
    const CpuNodeTables& t = tables_[&node - net_.nodes.data()];
    const LayerWeights weights = t.rows.empty() ? LayerWeights{node.kernel.data(), false}
                                                : LayerWeights{t.rows.data(), true};
    const bool shared = threads_ > 1 && double(changes.count) * t.synapses_per_input >= policy_.min_scatter;
    if (!shared) {
      s.nonzero_inputs += absorb(node, weights, changes, s.current_sum.data(), s.missing_sum.data());
      return;
    }
    s.nonzero_inputs += collect_events(changes, events_);
    const EventList events{events_.data(), events_.size()};
    for_each_share(threads_, node.size, [&](int, int64_t lo, int64_t hi) {
      scatter(node, weights, events, s.current_sum.data(), s.missing_sum.data(), OutputRange{lo, hi});
    });
  }

  // Runs work(share, lo, hi) for up to `threads` consecutive shares of
  // [0, n) (multiples of 256 long), in parallel where there are several;
  // returns the number of shares.
  template <typename Work>
  static int for_each_share(int threads, int64_t n, Work&& work) {
    const int64_t per = (n + threads - 1) / threads;
    const int64_t step = std::max<int64_t>(256, (per + 255) / 256 * 256);
    const int shares = int((n + step - 1) / step);
    if (shares <= 1) {
      work(0, int64_t(0), n);
      return 1;
    }
#pragma omp parallel for num_threads(shares) schedule(static, 1)
    for (int k = 0; k < shares; ++k) work(k, k * step, std::min(n, (k + 1) * step));
    return shares;
  }

  // I and M of neuron i from the running sums (SEMANTICS.md steps 1-2).
  float current_of(const Node& node, const NodeState& s, const std::vector<float>& bias,
                   int64_t i) const {
    if (s.nonzero_inputs == 0) return 0.0f;  // 2: no input yet, no bias
    const float sum = float(s.current_sum[i]);
    if (node.kind == NodeKind::AveragePooling2D) return sum / node.pool_count[i / node.geom.out_c];
    return sum + bias[i];  // per-neuron b * dt (zeros without a bias)
  }
  float missing_of(const Node& node, const NodeState& s, int64_t i) const {
    const float sum = float(s.missing_sum[i]);
    if (node.kind == NodeKind::AveragePooling2D) return sum / node.pool_count[i / node.geom.out_c];
    return sum;
  }

  // Returns true if `rec` holds this step's records (false: softmax, use record()).
  bool integrate_step(const Node& node, NodeState& s, const StepConstants& k, int64_t sample, int t,
                      StepRecord& rec) {
    absorb_input_changes(node, s);
    const std::vector<float>& bias = tables_[&node - net_.nodes.data()].bias_dt;
    s.changed = false;
    if (node.softmax) {
      softmax_step(node, s, bias, k, sample, t);
      return false;
    }
    update_neurons(node, s, bias, k, rec);
    s.changed = !s.changed_list.empty();
    return true;
  }

  // The fused per-neuron pass of one layer (steps 1-11 after the synaptic
  // sums), then a scan of its flags for records and changed outputs.
  void update_neurons(const Node& node, NodeState& s, const std::vector<float>& bias,
                      const StepConstants& k, StepRecord& rec) {
    const size_t index = size_t(&node - net_.nodes.data());
    LayerArrays a{s.current_sum.data(), s.missing_sum.data(), bias.data(),
                  node.kind == NodeKind::AveragePooling2D ? tables_[index].pool_count.data() : nullptr,
                  s.membrane.data(), s.threshold.data(), s.refrac_until.data(),
                  s.last_spike.data(), s.prospective.data(), s.signal.data()};
    s.changed_list.clear();
    spiked_.clear();
    const bool has_input = s.nonzero_inputs != 0;
    if (node.size < policy_.min_pass || threads_ == 1) {
      neuron_pass(a, node.size, has_input, k, PassOutput{s.changed_list, spiked_});
    } else {  // each share lists its neurons, then the lists are joined in order
      const int used = for_each_share(threads_, node.size, [&](int share, int64_t lo, int64_t hi) {
        PassShare& p = shares_[size_t(share)];
        p.begin = lo;
        p.changed.clear();
        p.spiked.clear();
        neuron_pass(a.from(lo), hi - lo, has_input, k, PassOutput{p.changed, p.spiked});
      });
      for (int share = 0; share < used; ++share) {
        const PassShare& p = shares_[size_t(share)];
        for (const int64_t i : p.changed) s.changed_list.push_back(p.begin + i);
        for (const int64_t i : p.spiked) spiked_.push_back(p.begin + i);
      }
    }
    rec.spikes += int64_t(spiked_.size());
    for (const int64_t i : spiked_) {  // 8: spike-train record
      rec.synops += rec.fanout[i];
      if (rec.first_spike && rec.first_spike[i] == 0.0f) rec.first_spike[i] = k.tau;
    }
  }

  // Stochastic softmax output: spike where u <= softmax(V') over the last axis.
  void softmax_step(const Node& node, NodeState& s, const std::vector<float>& bias,
                    const StepConstants& k, int64_t sample, int t) {
    const int64_t classes = node.geom.out_c;
    std::vector<float>& e = softmax_scratch_;
    for (int64_t pos = 0; pos < node.size; pos += classes) {
      float v_max = -INFINITY;
      for (int64_t i = pos; i < pos + classes; ++i) {
        const float current = current_of(node, s, bias, i);
        s.membrane[i] = integrate(current, s.membrane[i], s.refrac_until[i], k);
        v_max = std::max(v_max, s.membrane[i]);
        softmax_neuron_flags(current, missing_of(node, s, i), k, s.refrac_until[i], s.threshold[i],
                             s.prospective[i]);
      }
      float total = 0.0f;
      for (int64_t i = pos; i < pos + classes; ++i) {
        e[i] = std::exp(s.membrane[i] - v_max);
        total += e[i];
      }
      for (int64_t i = pos; i < pos + classes; ++i) {
        const float u = softmax_uniform(cfg_.seed, uint32_t(i), uint32_t(sample), uint32_t(t));
        s.recorded[i] = u <= e[i] / total;
        s.signal[i] = s.recorded[i] ? 1.0f : 0.0f;
      }
    }
    s.changed_list.clear();
    for (int64_t i = 0; i < node.size; ++i) s.changed_list.push_back(i);
    s.changed = true;
  }

  void maxpool_step_node(const Node& node, NodeState& s, const StepConstants& k) {
    const NodeState& in = state_[node.inbound[0]];
    const Geometry& g = node.geom;
    if (in.changed) {  // re-pool only when the input moved
      for (int oy = 0; oy < g.out_h; ++oy)
        for (int ox = 0; ox < g.out_w; ++ox)
          for (int c = 0; c < g.out_c; ++c) {
            float m, mp;
            max_pool_window(g, in.signal.data(), in.prospective.data(), oy, ox, c, m, mp);
            const int64_t o = (int64_t(oy) * g.out_w + ox) * g.out_c + c;
            s.pooled[o] = m;
            s.pooled_prospective[o] = mp;
          }
    }
    s.changed_list.clear();
    for (int64_t i = 0; i < node.size; ++i) {
      s.recorded[i] = maxpool_step(s.pooled[i], k.tau, s.last_spike[i]);
      if (s.pooled_prospective[i] != 0.0f) s.last_prospective[i] = k.tau;
      const float a = relu_signal(s.last_spike[i], k.dt);
      const float p = relu_signal(s.last_prospective[i], k.dt);
      if (a != s.signal[i] || p != s.prospective[i]) s.changed_list.push_back(i);
      s.signal[i] = a;
      s.prospective[i] = p;
    }
    s.changed = !s.changed_list.empty();
  }

  // Spike-train records of this step: first-spike times, spike counts, synops.
  void record(const Node& node, size_t index, const StepConstants& k, int64_t row,
              const ResultViews& out, double& synops, int64_t* spikes) {
    const NodeState& s = state_[index];
    const int l = slot_[index];
    float* first = out.first_spike.empty() ? nullptr : out.first_spike[l] + row * node.size;
    int64_t n = 0;
    double ops = 0.0;
    for (int64_t i = 0; i < node.size; ++i) {
      if (!s.recorded[i]) continue;
      ++n;
      ops += node.fanout[i];
      if (first && first[i] == 0.0f) first[i] = k.tau;
    }
    spikes[l] += n;
    synops += ops;
  }

  const Network& net_;
  const SimConfig& cfg_;
  const std::vector<int>& spiking_;
  const std::vector<int>& slot_;
  const std::vector<CpuNodeTables>& tables_;
  std::vector<NodeState> state_;
  std::vector<int32_t> class_count_;
  float end_tau_ = 0.0f;  // time of the last step
  std::vector<float> softmax_scratch_;
  std::vector<int64_t> spiked_;  // neurons of a layer that spiked this step
  std::vector<InputEvent> events_;  // a layer's input changes this step
  // Sharing a sample's layers between threads: each share's part of the
  // neuron pass (neurons from `begin`, listed relative to it).
  struct PassShare {
    int64_t begin = 0;
    std::vector<int64_t> changed, spiked;
  };
  int threads_;
  SharePolicy policy_;
  std::vector<PassShare> shares_;
};

}  // namespace

#ifdef TTFS_X86
const char* cpu_kernels() { return kAvx2 ? "avx2" : "generic"; }
#else
const char* cpu_kernels() { return "generic"; }
#endif

CpuEngine::CpuEngine(const Network& net, const SimConfig& config) : net_(net), config_(config) {
  // TTFS_CPU_SHARE=all shares every layer (to test the sharing on small networks).
  const char* share = std::getenv("TTFS_CPU_SHARE");
  const std::string share_mode = share ? share : "";
  if (!share_mode.empty() && share_mode != "auto" && share_mode != "all")
    throw std::invalid_argument("TTFS_CPU_SHARE='" + share_mode + "': use 'auto' or 'all'");
  if (share_mode == "all") share_policy_ = SharePolicy{0.0, 0};
  shares_layers_ = std::any_of(net_.nodes.begin(), net_.nodes.end(), [&](const Node& node) {
    return node.integrates() && node.size >= share_policy_.min_pass;
  });
  spiking_ = net_.spiking_nodes();
  spiking_slot_.assign(net_.nodes.size(), -1);
  for (size_t l = 0; l < spiking_.size(); ++l) spiking_slot_[spiking_[l]] = int(l);
  tables_.resize(net_.nodes.size());
  for (size_t i = 0; i < net_.nodes.size(); ++i) {
    const Node& node = net_.nodes[i];
    if (!node.integrates()) continue;
    CpuNodeTables& t = tables_[i];
    // b * dt and pool cell counts per neuron, so the neuron pass is one flat loop
    const int64_t channels = node.geom.out_c;
    t.bias_dt.assign(node.size, 0.0f);
    if (!node.bias.empty())
      for (int64_t n = 0; n < node.size; ++n) t.bias_dt[n] = node.bias[n % channels] * config_.dt;
    if (node.kind == NodeKind::AveragePooling2D) {
      t.pool_count.resize(node.size);
      for (int64_t n = 0; n < node.size; ++n) t.pool_count[n] = node.pool_count[n / channels];
    }
    if (node.kind == NodeKind::Conv2D && conv_rows_apply(node.geom)) {
      t.rows.resize(node.kernel.size());
      conv_row_layout(node.geom, node.kernel.data(), t.rows.data());
    }
    const Geometry& g = node.geom;
    const double taps = node.kind == NodeKind::Dense ? 1.0 : double(g.kernel_h) * g.kernel_w;
    const double fan_in = node.kind == NodeKind::Dense || node.kind == NodeKind::Conv2D ? taps * g.in_c : taps;
    t.synapses_per_input = double(node.size) * fan_in / double(std::max<int64_t>(1, g.in_size()));
  }
}

void CpuEngine::run(const float* x, int64_t samples, int64_t sample_offset, const ResultViews& out,
                    int num_threads) const {
  const int64_t in_size = net_.nodes[0].size;
  const int wanted = std::max(1, num_threads > 0 ? num_threads : max_threads());
  // Fewer samples than threads: where the network has large layers, the
  // threads share each sample's, one sample after another.
  if (samples < wanted && shares_layers_) {
    SampleRunner runner(net_, config_, spiking_, spiking_slot_, tables_, wanted, share_policy_);
    for (int64_t n = 0; n < samples; ++n) runner.run(x + n * in_size, sample_offset + n, n, out);
    return;
  }
  // Otherwise the work is split by sample: more threads than samples would only wait.
  const int threads = int(std::min<int64_t>(wanted, samples));
#pragma omp parallel num_threads(threads)
  {
    SampleRunner runner(net_, config_, spiking_, spiking_slot_, tables_);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < samples; ++n) runner.run(x + n * in_size, sample_offset + n, n, out);
  }
}

}  // namespace ttfs
