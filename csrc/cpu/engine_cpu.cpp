#include "engine_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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

// The synaptic scatter is most of the arithmetic: it is compiled a second
// time for AVX2 and chosen at run time, so one binary stays portable.
using ScatterFn = void (*)(NodeKind, const Geometry&, const float*, int64_t, float, double*);

void scatter_generic(NodeKind kind, const Geometry& g, const float* w, int64_t j, float delta,
                     double* acc) {
  scatter_input(kind, g, w, j, delta, acc);
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx2"))) void scatter_avx2(NodeKind kind, const Geometry& g, const float* w,
                                                  int64_t j, float delta, double* acc) {
  scatter_input(kind, g, w, j, delta, acc);
}
#endif

ScatterFn pick_scatter() {
#if defined(__GNUC__) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return scatter_avx2;
#endif
  return scatter_generic;
}

const ScatterFn scatter = pick_scatter();

// Per-neuron flags of one step.
constexpr uint8_t kSpiked = 1, kChanged = 2;

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
  uint8_t* flags;
};

// ttfs_neuron_step over a whole layer, branch-free so that it vectorises.
// A neuron whose refractory period outlasts the run goes through it too: its
// membrane stays 0 below threshold and nothing observable changes.
// HasInput: step 2, while the sample's input is all zero, I = 0 (no bias either).
// ttfs_neuron_step over a whole layer, branch-free so that it vectorises.
// `bias_dt` (b * dt) and `pool_count` are given per neuron. A neuron whose
// refractory period outlasts the run goes through it too: its membrane stays
// 0 below threshold and nothing observable changes.
template <bool AveragePool, bool HasInput>
inline void neuron_run(const double* __restrict current_sum, const double* __restrict missing_sum,
                       const float* __restrict bias_dt, const float* __restrict count,
                       float* __restrict membrane, float* __restrict threshold,
                       float* __restrict refrac_until, float* __restrict last_spike,
                       float* __restrict prospective, float* __restrict signal,
                       uint8_t* __restrict flags, int64_t n, const StepConstants k) {
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
    flags[i] = uint8_t((spiked ? kSpiked : 0) | (changed ? kChanged : 0));
  }
}

template <bool AveragePool, bool HasInput>
inline void neuron_pass_impl(const LayerArrays& a, int64_t n, const StepConstants& k) {
  neuron_run<AveragePool, HasInput>(a.current_sum, a.missing_sum, a.bias_dt, a.pool_count, a.membrane,
                                    a.threshold, a.refrac_until, a.last_spike, a.prospective,
                                    a.signal, a.flags, n, k);
}

inline void neuron_pass_dispatch(const LayerArrays& a, int64_t n, bool has_input,
                                 const StepConstants& k) {
  if (a.pool_count) {
    if (has_input) neuron_pass_impl<true, true>(a, n, k);
    else neuron_pass_impl<true, false>(a, n, k);
  } else {
    if (has_input) neuron_pass_impl<false, true>(a, n, k);
    else neuron_pass_impl<false, false>(a, n, k);
  }
}

void neuron_pass_generic(const LayerArrays& a, int64_t n, bool has_input, const StepConstants& k) {
  neuron_pass_dispatch(a, n, has_input, k);
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx2"))) void neuron_pass_avx2(const LayerArrays& a, int64_t n,
                                                      bool has_input, const StepConstants& k) {
  neuron_pass_dispatch(a, n, has_input, k);
}
#endif

using NeuronPassFn = void (*)(const LayerArrays&, int64_t, bool, const StepConstants&);
NeuronPassFn pick_neuron_pass() {
#if defined(__GNUC__) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return neuron_pass_avx2;
#endif
  return neuron_pass_generic;
}
const NeuronPassFn neuron_pass = pick_neuron_pass();

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
  std::vector<uint8_t> recorded;           // spike-train record non-zero this step
  // Integrating layers: input already scattered, and the sums it produced.
  std::vector<float> seen_signal, seen_prospective;
  std::vector<double> current_sum, missing_sum;
  int64_t nonzero_inputs = 0;
  std::vector<float> membrane, threshold, refrac_until, last_spike;
  // MaxPooling2D: pooled input and the spike time of its prospective map.
  std::vector<float> pooled, pooled_prospective, last_prospective;
};

class SampleRunner {
 public:
  SampleRunner(const Network& net, const SimConfig& cfg, const std::vector<int>& spiking,
               const std::vector<int>& slot, const std::vector<std::vector<float>>& bias_dt,
               const std::vector<std::vector<float>>& pool_count)
      : net_(net), cfg_(cfg), spiking_(spiking), slot_(slot), bias_dt_(bias_dt),
        pool_count_(pool_count),
        state_(net.nodes.size()) {
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
    for (const int64_t j : in.changed_list) {
      const float a = in.signal[j], a_seen = s.seen_signal[j];
      if (a != a_seen) {
        scatter(node.kind, node.geom, node.kernel.data(), j, a - a_seen, s.current_sum.data());
        s.nonzero_inputs += int(a != 0.0f) - int(a_seen != 0.0f);
        s.seen_signal[j] = a;
      }
      const float p = in.prospective[j], p_seen = s.seen_prospective[j];
      if (p != p_seen) {
        scatter(node.kind, node.geom, node.abs_kernel.data(), j, p - p_seen, s.missing_sum.data());
        s.seen_prospective[j] = p;
      }
    }
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
    const std::vector<float>& bias = bias_dt_[&node - net_.nodes.data()];
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
                  node.kind == NodeKind::AveragePooling2D ? pool_count_[index].data() : nullptr,
                  s.membrane.data(), s.threshold.data(), s.refrac_until.data(),
                  s.last_spike.data(), s.prospective.data(), s.signal.data(), s.recorded.data()};
    neuron_pass(a, node.size, s.nonzero_inputs != 0, k);
    s.changed_list.clear();
    const uint8_t* flags = s.recorded.data();
    for (int64_t i = 0; i < node.size; ++i) {
      if (i + 8 <= node.size) {  // skip quiet runs of 8 neurons at once
        uint64_t word;
        std::memcpy(&word, flags + i, sizeof word);
        if (word == 0) {
          i += 7;
          continue;
        }
      }
      if (!flags[i]) continue;
      if (flags[i] & kChanged) s.changed_list.push_back(i);
      if (flags[i] & kSpiked) {  // 8: spike-train record
        ++rec.spikes;
        rec.synops += rec.fanout[i];
        if (rec.first_spike && rec.first_spike[i] == 0.0f) rec.first_spike[i] = k.tau;
      }
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
  const std::vector<std::vector<float>>& bias_dt_;
  const std::vector<std::vector<float>>& pool_count_;
  std::vector<NodeState> state_;
  std::vector<int32_t> class_count_;
  float end_tau_ = 0.0f;  // time of the last step
  std::vector<float> softmax_scratch_;
};

}  // namespace

CpuEngine::CpuEngine(const Network& net, const SimConfig& config) : net_(net), config_(config) {
  spiking_ = net_.spiking_nodes();
  spiking_slot_.assign(net_.nodes.size(), -1);
  for (size_t l = 0; l < spiking_.size(); ++l) spiking_slot_[spiking_[l]] = int(l);
  bias_dt_.resize(net_.nodes.size());
  pool_count_.resize(net_.nodes.size());
  for (size_t i = 0; i < net_.nodes.size(); ++i) {
    const Node& node = net_.nodes[i];
    if (!node.integrates()) continue;
    // b * dt and pool cell counts per neuron, so the neuron pass is one flat loop
    const int64_t channels = node.geom.out_c;
    bias_dt_[i].assign(node.size, 0.0f);
    if (!node.bias.empty())
      for (int64_t n = 0; n < node.size; ++n) bias_dt_[i][n] = node.bias[n % channels] * config_.dt;
    if (node.kind == NodeKind::AveragePooling2D) {
      pool_count_[i].resize(node.size);
      for (int64_t n = 0; n < node.size; ++n) pool_count_[i][n] = node.pool_count[n / channels];
    }
  }
}

void CpuEngine::run(const float* x, int64_t samples, int64_t sample_offset, const ResultViews& out,
                    int num_threads) const {
  const int64_t in_size = net_.nodes[0].size;
  // Work is split by sample: more threads than samples would only wait.
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(num_threads > 0 ? num_threads : max_threads(), samples)));
#pragma omp parallel num_threads(threads)
  {
    SampleRunner runner(net_, config_, spiking_, spiking_slot_, bias_dt_, pool_count_);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < samples; ++n) runner.run(x + n * in_size, sample_offset + n, n, out);
  }
}

}  // namespace ttfs
