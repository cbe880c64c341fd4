#include "cpu_kernels.h"
#include "grouped_scatter.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#define TTFS_X86 1
#include <immintrin.h>
// The AVX-512 kernels: the same code as the AVX2 ones, compiled for 512-bit vectors.
#define TTFS_AVX512 "avx2,fma,avx512f,avx512vl,avx512dq,avx512bw,prefer-vector-width=512"
#endif

namespace ttfs {
namespace cpu {

namespace {
// Per-neuron flags of one step (32 bits wide, as the neuron state, so that
// the neuron pass vectorises without packing).
using Flags = uint32_t;
constexpr Flags kSpiked = 1, kChanged = 2;


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
// are visited (one thread), or an EventList (threads sharing the layer).
struct ChangesAsEvents {
  const InputChanges& c;
  int64_t nonzero = 0;
  size_t size() const { return c.count; }
  TTFS_KERNEL bool get(size_t n, InputEvent& e) { return take_change(c, c.changed[n], e, nonzero); }
};

}  // namespace

int64_t collect_events(const InputChanges& c, std::vector<InputEvent>& events) {
  events.clear();
  int64_t nonzero = 0;
  InputEvent e;
  for (size_t n = 0; n < c.count; ++n)
    if (take_change(c, c.changed[n], e, nonzero)) events.push_back(e);
  return nonzero;
}

namespace {

// scatter_change, or scatter_conv_rows where the weights are in row layout.
template <NodeKind Kind, bool Signal, bool Prospective, typename Acc, typename Range>
TTFS_KERNEL void scatter_one(const Geometry& g, const LayerWeights& lw, const InputEvent& e, Acc* cur,
                             Acc* miss, const Range& range) {
  if (Kind == NodeKind::Conv2D && lw.rows)
    scatter_conv_rows<Signal, Prospective>(g, lw.w, e.j, e.da, e.dp, cur, miss, range);
  else
    scatter_change<Kind, Signal, Prospective>(g, lw.w, e.j, e.da, e.dp, cur, miss, range);
}

// Scatters the events into the sums in `range` (one walk over the
// connections of an element whose signal and prospective flag both changed,
// as when it fires).
template <NodeKind Kind, typename Source, typename Acc, typename Range>
TTFS_KERNEL void scatter_kind(const Node& node, const LayerWeights& lw, Source& events, Acc* cur,
                              Acc* miss, const Range& range) {
  const Geometry& g = node.geom;
  InputEvent e;
  for (size_t n = 0; n < events.size(); ++n) {
    if (!events.get(n, e)) continue;
    if (e.signal && e.prospective) scatter_one<Kind, true, true>(g, lw, e, cur, miss, range);
    else if (e.signal) scatter_one<Kind, true, false>(g, lw, e, cur, miss, range);
    else scatter_one<Kind, false, true>(g, lw, e, cur, miss, range);
  }
}

// I: the instruction set the caller is compiled for.
template <Isa I, typename Source, typename Acc, typename Range>
TTFS_KERNEL void scatter_dispatch(const Node& node, const LayerWeights& lw, Source& events, Acc* cur,
                                  Acc* miss, const Range& range) {
  switch (node.kind) {
    case NodeKind::Dense:
      if (grouped_scatter_pays<I, Acc>(node.geom.multiplier))
        return scatter_grouped<NodeKind::Dense, I>(node, lw.w, events, cur, miss, range);
      return scatter_kind<NodeKind::Dense>(node, lw, events, cur, miss, range);
    case NodeKind::Conv2D:
      if (lw.rows && grouped_scatter_pays<I, Acc>(int64_t(node.geom.multiplier) *
                                                  std::max(1, node.geom.kernel_w / node.geom.stride_w)))
        return scatter_grouped<NodeKind::Conv2D, I>(node, lw.w, events, cur, miss, range);
      return scatter_kind<NodeKind::Conv2D>(node, lw, events, cur, miss, range);
    case NodeKind::DepthwiseConv2D:  // grouped where cells have channels to share their windows
      if (node.geom.in_c >= kChannelGroupMin)
        return scatter_grouped<NodeKind::DepthwiseConv2D, I>(node, lw.w, events, cur, miss, range);
      return scatter_kind<NodeKind::DepthwiseConv2D>(node, lw, events, cur, miss, range);
    case NodeKind::AveragePooling2D:
      if (node.geom.in_c >= kChannelGroupMin)
        return scatter_grouped<NodeKind::AveragePooling2D, I>(node, lw.w, events, cur, miss, range);
      return scatter_kind<NodeKind::AveragePooling2D>(node, lw, events, cur, miss, range);
    default: return;  // not an integrating layer
  }
}

// The synaptic scatter is most of the arithmetic: it is compiled a second
// time for AVX2 and chosen at run time, so one binary stays portable. absorb:
// one thread takes the changes and scatters them into all sums (returns the
// change in non-zero input elements); scatter: a thread's share of a list.
template <typename Acc>
int64_t absorb_generic(const Node& node, const LayerWeights& lw, const InputChanges& c, Acc* cur,
                       Acc* miss) {
  ChangesAsEvents events{c};
  scatter_dispatch<Isa::Generic>(node, lw, events, cur, miss, AllOutputs{});
  return events.nonzero;
}
template <typename Acc>
void scatter_generic(const Node& node, const LayerWeights& lw, const EventList& events, Acc* cur,
                     Acc* miss, const OutputRange& range) {
  scatter_dispatch<Isa::Generic>(node, lw, events, cur, miss, range);
}
#ifdef TTFS_X86
template <typename Acc>
__attribute__((target("avx2"))) int64_t absorb_avx2(const Node& node, const LayerWeights& lw,
                                                    const InputChanges& c, Acc* cur, Acc* miss) {
  ChangesAsEvents events{c};
  scatter_dispatch<Isa::Avx2>(node, lw, events, cur, miss, AllOutputs{});
  return events.nonzero;
}
template <typename Acc>
__attribute__((target("avx2"))) void scatter_avx2(const Node& node, const LayerWeights& lw,
                                                  const EventList& events, Acc* cur, Acc* miss,
                                                  const OutputRange& range) {
  scatter_dispatch<Isa::Avx2>(node, lw, events, cur, miss, range);
}
template <typename Acc>
__attribute__((target(TTFS_AVX512))) int64_t absorb_avx512(const Node& node, const LayerWeights& lw,
                                                           const InputChanges& c, Acc* cur, Acc* miss) {
  ChangesAsEvents events{c};
  scatter_dispatch<Isa::Avx512>(node, lw, events, cur, miss, AllOutputs{});
  return events.nonzero;
}
template <typename Acc>
__attribute__((target(TTFS_AVX512))) void scatter_avx512(const Node& node, const LayerWeights& lw,
                                                         const EventList& events, Acc* cur, Acc* miss,
                                                         const OutputRange& range) {
  scatter_dispatch<Isa::Avx512>(node, lw, events, cur, miss, range);
}
#endif

// ttfs_neuron_step over n neurons of a layer (the arrays start at the first),
// branch-free so that it vectorises; flags[i] says what neuron i did. `bias_dt`
// (b * dt) and `pool_count` are given per neuron. A neuron whose refractory
// period outlasts the run goes through it too: its membrane stays 0 below
// threshold and nothing observable changes. HasInput: step 2, while the
// sample's input is all zero, I = 0 (no bias either).
template <bool AveragePool, bool HasInput, typename Acc>
TTFS_KERNEL void neuron_run(const Acc* __restrict current_sum, const Acc* __restrict missing_sum,
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

template <bool AveragePool, bool HasInput, typename Acc, typename Scan>
TTFS_KERNEL void pass_blocks(const LayerArrays<Acc>& a, int64_t n, const StepConstants& k, const PassOutput& out,
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

template <typename Acc, typename Scan>
TTFS_KERNEL void neuron_pass_dispatch(const LayerArrays<Acc>& a, int64_t n, bool has_input, const StepConstants& k,
                                 const PassOutput& out, Scan scan) {
  if (a.pool_count) {
    if (has_input) pass_blocks<true, true>(a, n, k, out, scan);
    else pass_blocks<true, false>(a, n, k, out, scan);
  } else {
    if (has_input) pass_blocks<false, true>(a, n, k, out, scan);
    else pass_blocks<false, false>(a, n, k, out, scan);
  }
}

template <typename Acc>
void neuron_pass_generic(const LayerArrays<Acc>& a, int64_t n, bool has_input, const StepConstants& k,
                         const PassOutput& out) {
  neuron_pass_dispatch(a, n, has_input, k, out, scan_flags_generic);
}

#ifdef TTFS_X86
template <typename Acc>
__attribute__((target("avx2"))) void neuron_pass_avx2(const LayerArrays<Acc>& a, int64_t n, bool has_input,
                                                      const StepConstants& k, const PassOutput& out) {
  struct Scan {
    __attribute__((target("avx2"))) void operator()(const Flags* f, int64_t b, int64_t c,
                                                    const PassOutput& o) const {
      scan_flags_avx2(f, b, c, o);
    }
  };
  neuron_pass_dispatch(a, n, has_input, k, out, Scan{});
}
template <typename Acc>
__attribute__((target(TTFS_AVX512))) void neuron_pass_avx512(const LayerArrays<Acc>& a, int64_t n, bool has_input,
                                                             const StepConstants& k, const PassOutput& out) {
  struct Scan {
    __attribute__((target(TTFS_AVX512))) void operator()(const Flags* f, int64_t b, int64_t c,
                                                         const PassOutput& o) const {
      scan_flags_avx2(f, b, c, o);
    }
  };
  neuron_pass_dispatch(a, n, has_input, k, out, Scan{});
}
#endif

// neuron_run over `count` steps for neurons whose sums do not change (a
// layer whose input is constant): lanes of kLanes neurons keep their state in
// registers through all steps, and only changes of their outputs are written.
// The state arrays are left as they were: the caller replays the outputs.
constexpr int kLanes = 8;

// After a step at time tau, a neuron of constant input changes its outputs
// no more: it is refractory past the last step (end_tau), or it is not
// refractory, below its (constant) threshold and its input cannot raise the
// membrane (I <= 0; the leak only lowers it).
TTFS_KERNEL bool trajectory_settled(float current, float v, float theta, float r, float tau, float end_tau) {
  return (r > end_tau) | ((current <= 0.0f) & (v < theta) & (r <= tau));
}

// One lane block's starting state for a trajectory: kLanes neurons from b
// (lanes of them real; the rest idle: no input, never reaching the threshold).
struct TrajectoryLanes {
  alignas(32) float current[kLanes], missing[kLanes], v[kLanes], theta[kLanes], r[kLanes], s[kLanes], p[kLanes],
      signal[kLanes];
};
template <typename Acc>
TTFS_KERNEL void load_lanes(const LayerArrays<Acc>& a, int64_t b, int lanes, bool pool, bool has_input,
                            TrajectoryLanes& x) {
  for (int l = 0; l < kLanes; ++l) {
    if (l < lanes) {
      const int64_t i = b + l;
      const float c = pool ? float(a.current_sum[i]) / a.pool_count[i] : float(a.current_sum[i]) + a.bias_dt[i];
      x.current[l] = has_input ? c : 0.0f;
      x.missing[l] = pool ? float(a.missing_sum[i]) / a.pool_count[i] : float(a.missing_sum[i]);
      x.v[l] = a.membrane[i];
      x.theta[l] = a.threshold[i];
      x.r[l] = a.refrac_until[i];
      x.s[l] = a.last_spike[i];
      x.p[l] = a.prospective[i];
      x.signal[l] = a.signal[i];
    } else {
      x.current[l] = x.missing[l] = x.v[l] = x.r[l] = x.p[l] = x.signal[l] = 0.0f;
      x.theta[l] = INFINITY;
      x.s[l] = -1.0f;
    }
  }
}

template <bool AveragePool, bool HasInput, typename Acc>
TTFS_KERNEL void trajectory_run(const LayerArrays<Acc>& a, int64_t n, const StepConstants* steps, int count,
                                int64_t first, std::vector<TrajectoryEvent>& out) {
  for (int64_t b = 0; b < n; b += kLanes) {
    const int lanes = int(std::min<int64_t>(kLanes, n - b));
    TrajectoryLanes lane;
    load_lanes(a, b, lanes, AveragePool, HasInput, lane);
    float *current = lane.current, *missing = lane.missing, *v = lane.v, *theta = lane.theta, *r = lane.r,
          *s = lane.s, *p = lane.p, *signal = lane.signal;
    for (int x = 0; x < count; ++x) {
      const StepConstants k = steps[x];
      Flags flags[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        const float before_p = p[l];
        const bool spiked = ttfs_neuron_step(current[l], missing[l], k, v[l], theta[l], r[l], s[l], p[l]);
        const float o = relu_signal(s[l], k.dt);
        const bool changed = (o != signal[l]) | (before_p != p[l]);
        signal[l] = o;
        flags[l] = (spiked ? kSpiked : 0) | (changed ? kChanged : 0);
      }
      Flags any = 0;
      for (int l = 0; l < kLanes; ++l) any |= flags[l];
      for (int l = 0; l < lanes && any; ++l)
        if (flags[l]) out.push_back(TrajectoryEvent{first + b + l, x, (flags[l] & kSpiked) != 0, signal[l], p[l]});
      bool settled = true;
      for (int l = 0; l < kLanes; ++l)
        settled = settled && trajectory_settled(current[l], v[l], theta[l], r[l], k.tau, steps[count - 1].tau);
      if (settled) break;
    }
  }
}

template <typename Acc>
TTFS_KERNEL void trajectory_dispatch(const LayerArrays<Acc>& a, int64_t n, bool has_input, const StepConstants* steps,
                                     int count, int64_t first, std::vector<TrajectoryEvent>& out) {
  if (a.pool_count) {
    if (has_input) trajectory_run<true, true>(a, n, steps, count, first, out);
    else trajectory_run<true, false>(a, n, steps, count, first, out);
  } else {
    if (has_input) trajectory_run<false, true>(a, n, steps, count, first, out);
    else trajectory_run<false, false>(a, n, steps, count, first, out);
  }
}

#ifdef TTFS_X86
// trajectory_run with the lanes in one AVX2 register: the same operations as
// ttfs_neuron_step, lane by lane (ordered compares as C++'s <, <=, >, >=;
// unordered != as C++'s !=).
// (The AVX-512 kernels run it too: eight lanes are about as many as a layer's
// neurons that stay unsettled together.)
template <typename Acc>
__attribute__((target("avx2"))) void trajectory_avx2(const LayerArrays<Acc>& a, int64_t n, bool has_input,
                                                     const StepConstants* steps, int count, int64_t first,
                                                     std::vector<TrajectoryEvent>& out) {
  const bool pool = a.pool_count != nullptr;
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 end_tau = _mm256_set1_ps(steps[count - 1].tau);
  alignas(32) float signal_out[kLanes], prospective_out[kLanes];
  for (int64_t b = 0; b < n; b += kLanes) {
    const int lanes = int(std::min<int64_t>(kLanes, n - b));
    TrajectoryLanes lane;
    load_lanes(a, b, lanes, pool, has_input, lane);
    const __m256 current = _mm256_load_ps(lane.current), missing = _mm256_load_ps(lane.missing);
    __m256 v = _mm256_load_ps(lane.v), theta = _mm256_load_ps(lane.theta), r = _mm256_load_ps(lane.r);
    __m256 s = _mm256_load_ps(lane.s), p = _mm256_load_ps(lane.p), signal = _mm256_load_ps(lane.signal);
    const __m256 input_on = _mm256_cmp_ps(current, zero, _CMP_GT_OQ);
    for (int x = 0; x < count; ++x) {
      const StepConstants& k = steps[x];
      const __m256 tau = _mm256_set1_ps(k.tau);
      // 3-4 (integrate)
      v = _mm256_add_ps(v, _mm256_blendv_ps(current, zero, _mm256_cmp_ps(r, tau, _CMP_GT_OQ)));
      if (k.leak)
        v = _mm256_blendv_ps(v, _mm256_sub_ps(v, _mm256_set1_ps(k.leak_step)), _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
      const __m256 spiked = _mm256_cmp_ps(v, theta, _CMP_GE_OQ);  // 5
      v = _mm256_blendv_ps(v, zero, spiked);                              // 6
      r = _mm256_blendv_ps(r, _mm256_set1_ps(k.refrac_end), spiked);       // 7
      s = _mm256_blendv_ps(s, tau, spiked);                                // 11
      const __m256 before_p = p;                                           // 9
      p = _mm256_and_ps(_mm256_and_ps(input_on, _mm256_cmp_ps(r, tau, _CMP_LE_OQ)), one);
      theta = _mm256_add_ps(_mm256_set1_ps(k.v0), missing);                // 10
      const __m256 o = _mm256_and_ps(_mm256_cmp_ps(s, zero, _CMP_GT_OQ), _mm256_set1_ps(k.dt));
      const __m256 changed = _mm256_or_ps(_mm256_cmp_ps(o, signal, _CMP_NEQ_UQ),
                                          _mm256_cmp_ps(before_p, p, _CMP_NEQ_UQ));
      signal = o;
      const int spiked_mask = _mm256_movemask_ps(spiked);
      if (const int any = (spiked_mask | _mm256_movemask_ps(changed)) & ((1 << lanes) - 1)) {
        _mm256_store_ps(signal_out, signal);
        _mm256_store_ps(prospective_out, p);
        for (int m = any; m; m &= m - 1) {
          const int l = __builtin_ctz(unsigned(m));
          out.push_back(TrajectoryEvent{first + b + l, x, ((spiked_mask >> l) & 1) != 0, signal_out[l],
                                        prospective_out[l]});
        }
      }
      const __m256 settled = _mm256_or_ps(
          _mm256_cmp_ps(r, end_tau, _CMP_GT_OQ),
          _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(current, zero, _CMP_LE_OQ), _mm256_cmp_ps(v, theta, _CMP_LT_OQ)),
                        _mm256_cmp_ps(r, tau, _CMP_LE_OQ)));
      if (_mm256_movemask_ps(settled) == 0xff) break;
    }
  }
}
#endif

template <typename Acc>
void trajectory_generic(const LayerArrays<Acc>& a, int64_t n, bool has_input, const StepConstants* steps, int count,
                        int64_t first, std::vector<TrajectoryEvent>& out) {
  trajectory_dispatch(a, n, has_input, steps, count, first, out);
}

}  // namespace

// The kernels of one instruction set for both types of sums.
#define TTFS_KERNEL_SET(name, absorb, scatter, pass, trajectory)                                   \
  CpuKernelSet {                                                                                    \
    name, {absorb<double>, scatter<double>, pass<double>, trajectory<double>},                      \
        {absorb<float>, scatter<float>, pass<float>, trajectory<float>}                             \
  }

const CpuKernelSet& cpu_kernel_set(CpuKernels requested) {
  static const CpuKernelSet generic =
      TTFS_KERNEL_SET("generic", absorb_generic, scatter_generic, neuron_pass_generic, trajectory_generic);
#ifdef TTFS_X86
  static const CpuKernelSet avx2 =
      TTFS_KERNEL_SET("avx2", absorb_avx2, scatter_avx2, neuron_pass_avx2, trajectory_avx2);
  static const CpuKernelSet avx512 =
      TTFS_KERNEL_SET("avx512", absorb_avx512, scatter_avx512, neuron_pass_avx512, trajectory_avx2);
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  static const bool has_avx512 = has_avx2 && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx512f") &&
                                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                                 __builtin_cpu_supports("avx512bw");
  if (requested == CpuKernels::Auto && has_avx512) return avx512;
  if (requested != CpuKernels::Generic && has_avx2) return avx2;
#else
  (void)requested;
#endif
  return generic;
}

}  // namespace cpu
}  // namespace ttfs
