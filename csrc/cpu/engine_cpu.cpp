#include "engine_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/neuron_step.h"
#include "../core/philox.h"
#include "../core/synapse.h"
#include "cpu_kernels.h"

namespace ttfs {

using cpu::CpuKernelSet;
using cpu::EventList;
using cpu::InputChanges;
using cpu::InputEvent;
using cpu::LayerWeights;
using cpu::PassOutput;
using cpu::TrajectoryEvent;

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

const char* cpu_kernels(CpuKernels requested) { return cpu::cpu_kernel_set(requested).name; }

namespace {

// What the spiking neurons of one layer produced at one step.
struct StepRecord {
  float* first_spike;    // this sample's first-spike times of the layer
  const double* fanout;  // synaptic operations per spike
  int64_t spikes;
  double synops;
};

// State of one node for the sample a thread is simulating.
template <typename Acc>
struct NodeState {
  std::vector<float> signal, prospective;  // a_out, p_out
  bool changed = false;                    // did signal or prospective change this step
  std::vector<int64_t> changed_list;       // ... and where
  std::vector<uint8_t> recorded;           // MaxPooling2D, softmax: spike-train record non-zero this step
  // Integrating layers: input already scattered, and the sums it produced.
  std::vector<float> seen_signal, seen_prospective;
  std::vector<Acc> current_sum, missing_sum;
  int64_t nonzero_inputs = 0;
  std::vector<float> membrane, threshold, refrac_until, last_spike;
  // MaxPooling2D: pooled input and the spike time of its prospective map.
  std::vector<float> pooled, pooled_prospective, last_prospective;
  // A layer whose input stays constant after step 1 (replays_from_step_2):
  // its output changes at steps 2..T, computed at step 2, and where those of
  // step t start in `replay` (t - 2; one entry more at the end).
  std::vector<TrajectoryEvent> replay;
  std::vector<size_t> replay_start;
};

// Simulates one sample at a time. `threads` > 1: the threads share each
// sample's large layers (split by output range in the scatter, by neuron
// blocks in the neuron pass), for batches smaller than the thread count.
template <typename Acc>
class SampleRunner {
  using NodeState = ttfs::NodeState<Acc>;
  using LayerArrays = cpu::LayerArrays<Acc>;

 public:
  SampleRunner(const Network& net, const SimConfig& cfg, const CpuKernelSet& kernels,
               const std::vector<int>& spiking, const std::vector<int>& slot,
               const std::vector<CpuNodeTables>& tables, int threads = 1, SharePolicy policy = {})
      : net_(net), cfg_(cfg), sums_(kernels.sums<Acc>()), spiking_(spiking), slot_(slot), tables_(tables),
        state_(net.nodes.size()), merge_target_(net.merge_targets()), threads_(threads), policy_(policy), shares_(size_t(threads)) {
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      NodeState& s = state_[i];
      s.signal.resize(node.size);
      s.prospective.resize(node.size);
      if (node.is_spiking()) s.recorded.resize(node.size);
      if (node.open || (node.integrates() && node.kind != NodeKind::Add)) {  // scatters its input
        const int64_t in = node.geom.in_size();
        s.seen_signal.resize(in);
        s.seen_prospective.resize(in);
      }
      if (node.integrates()) {
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
    softmax_scratch_.resize(net.nodes.back().size);
    // Nodes whose output is constant after step 1: the input and structural
    // layers fed only by such nodes. A layer fed by one replays (below).
    constant_after_first_.assign(net.nodes.size(), false);
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      bool constant = node.kind == NodeKind::Input || node.kind == NodeKind::Gather;
      for (int src : node.inbound) constant = constant && constant_after_first_[size_t(src)];
      constant_after_first_[i] = constant;
    }
    for (int t = 2; t <= cfg.steps; ++t) later_steps_.push_back(cfg.step(t));
  }

  // Sample `sample` of the whole input (x: its input; `sample` keys its softmax
  // draws), into row `row` of `out`.
  void run(const float* x, int64_t row, int64_t sample, const Results& out) {
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
            if (node.open) {  // a synapse group: into the sums of the Add that reads it
              if (merge_target_[i] >= 0) absorb_input_changes(node, state_[i], state_[merge_target_[i]]);
              break;
            }
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
  // last step (`seen` holds what was scattered before) into the running sums
  // of L(a_in) (without bias) and L_abs(p_in) in `s`: the node's own, or for
  // an open node, its Add's (SEMANTICS.md "Add": the groups' sums add up).
  void absorb_input_changes(const Node& node, NodeState& seen, NodeState& s) {
    const NodeState& in = state_[node.inbound[0]];
    if (in.changed_list.empty()) return;
    const InputChanges changes{in.signal.data(), in.prospective.data(), in.changed_list.data(),
                               in.changed_list.size(), seen.seen_signal.data(), seen.seen_prospective.data()};
    const CpuNodeTables& t = tables_[&node - net_.nodes.data()];
    const LayerWeights weights = t.rows.empty() ? LayerWeights{node.kernel.data(), false}
                                                : LayerWeights{t.rows.data(), true};
    const bool shared = threads_ > 1 && double(changes.count) * t.synapses_per_input >= policy_.min_scatter;
    if (!shared) {
      s.nonzero_inputs += sums_.absorb(node, weights, changes, s.current_sum.data(), s.missing_sum.data());
      return;
    }
    s.nonzero_inputs += cpu::collect_events(changes, events_);
    const EventList events{events_.data(), events_.size()};
    for_each_share(threads_, node.size, [&](int, int64_t lo, int64_t hi) {
      sums_.scatter(node, weights, events, s.current_sum.data(), s.missing_sum.data(), OutputRange{lo, hi});
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

  // A layer whose input is constant after step 1 has constant sums from then
  // on: its neurons' whole future (steps 1-11 at steps 2..T, the same
  // function on the same values) is computed at step 2 with their state in
  // registers, and each later step only replays its output changes.
  bool replays_from_step_2(const Node& node) const {
    return !node.softmax && constant_after_first_[size_t(node.inbound[0])];
  }

  // Step 2: the layer's output changes at steps 2..T, in step order (and
  // neuron order within a step).
  void plan_replay(const Node& node, NodeState& s, const LayerArrays& a) {
    const bool has_input = s.nonzero_inputs != 0;
    const int count = int(later_steps_.size());
    std::vector<TrajectoryEvent>& events = trajectory_;
    events.clear();
    if (threads_ > 1 && node.size >= policy_.min_pass) {
      const int used = for_each_share(threads_, node.size, [&](int share, int64_t lo, int64_t hi) {
        std::vector<TrajectoryEvent>& mine = shares_[size_t(share)].trajectory;
        mine.clear();
        sums_.trajectory(a.from(lo), hi - lo, has_input, later_steps_.data(), count, lo, mine);
      });
      for (int share = 0; share < used; ++share)
        events.insert(events.end(), shares_[size_t(share)].trajectory.begin(),
                      shares_[size_t(share)].trajectory.end());
    } else {
      sums_.trajectory(a, node.size, has_input, later_steps_.data(), count, 0, events);
    }
    // counting sort by step, stable: neuron order within a step
    s.replay_start.assign(size_t(count) + 1, 0);
    for (const TrajectoryEvent& e : events) ++s.replay_start[size_t(e.step) + 1];
    for (int x = 0; x < count; ++x) s.replay_start[size_t(x) + 1] += s.replay_start[size_t(x)];
    s.replay.resize(events.size());
    std::vector<size_t> next(s.replay_start.begin(), s.replay_start.end() - 1);
    for (const TrajectoryEvent& e : events) s.replay[next[size_t(e.step)]++] = e;
  }

  // Step t >= 2 of a replaying layer: its output changes and spikes of step t.
  void replay_step(NodeState& s, int t, const StepConstants& k, StepRecord& rec) {
    s.changed_list.clear();
    const size_t x = size_t(t - 2);
    for (size_t n = s.replay_start[x]; n < s.replay_start[x + 1]; ++n) {
      const TrajectoryEvent& e = s.replay[n];
      s.signal[size_t(e.neuron)] = e.signal;
      s.prospective[size_t(e.neuron)] = e.prospective;
      s.changed_list.push_back(e.neuron);
      if (!e.spiked) continue;
      ++rec.spikes;  // 8: spike-train record
      rec.synops += rec.fanout[e.neuron];
      if (rec.first_spike && rec.first_spike[e.neuron] == 0.0f) rec.first_spike[e.neuron] = k.tau;
    }
    s.changed = !s.changed_list.empty();
  }

  // Returns true if `rec` holds this step's records (false: softmax, use record()).
  bool integrate_step(const Node& node, NodeState& s, const StepConstants& k, int64_t sample, int t,
                      StepRecord& rec) {
    if (t >= 2 && replays_from_step_2(node)) {
      if (t == 2) plan_replay(node, s, arrays(node, s));
      replay_step(s, t, k, rec);
      return true;
    }
    if (node.kind != NodeKind::Add) absorb_input_changes(node, s, s);  // (an Add's groups did before it)
    const std::vector<float>& bias = tables_[&node - net_.nodes.data()].bias_dt;
    s.changed = false;
    if (node.softmax) {
      softmax_step(node, s, bias, k, sample, t);
      return false;
    }
    update_neurons(node, s, k, rec);
    s.changed = !s.changed_list.empty();
    return true;
  }

  // The fused per-neuron pass of one layer (steps 1-11 after the synaptic
  // sums), then a scan of its flags for records and changed outputs.
  // A layer's arrays for the neuron pass.
  LayerArrays arrays(const Node& node, NodeState& s) const {
    const CpuNodeTables& t = tables_[size_t(&node - net_.nodes.data())];
    return LayerArrays{s.current_sum.data(), s.missing_sum.data(), t.bias_dt.data(),
                       node.kind == NodeKind::AveragePooling2D ? t.pool_count.data() : nullptr,
                       s.membrane.data(), s.threshold.data(), s.refrac_until.data(),
                       s.last_spike.data(), s.prospective.data(), s.signal.data()};
  }

  void update_neurons(const Node& node, NodeState& s, const StepConstants& k, StepRecord& rec) {
    const LayerArrays a = arrays(node, s);
    s.changed_list.clear();
    spiked_.clear();
    const bool has_input = s.nonzero_inputs != 0;
    if (node.size < policy_.min_pass || threads_ == 1) {
      sums_.neuron_pass(a, node.size, has_input, k, PassOutput{s.changed_list, spiked_});
    } else {  // each share lists its neurons, then the lists are joined in order
      const int used = for_each_share(threads_, node.size, [&](int share, int64_t lo, int64_t hi) {
        PassShare& p = shares_[size_t(share)];
        p.begin = lo;
        p.changed.clear();
        p.spiked.clear();
        sums_.neuron_pass(a.from(lo), hi - lo, has_input, k, PassOutput{p.changed, p.spiked});
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
              const Results& out, double& synops, int64_t* spikes) {
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
  const cpu::SumKernels<Acc>& sums_;
  const std::vector<int>& spiking_;
  const std::vector<int>& slot_;
  const std::vector<CpuNodeTables>& tables_;
  std::vector<NodeState> state_;
  std::vector<int> merge_target_;  // an open node's Add, else -1
  std::vector<int32_t> class_count_;
  std::vector<float> softmax_scratch_;
  std::vector<int64_t> spiked_;  // neurons of a layer that spiked this step
  std::vector<InputEvent> events_;  // a layer's input changes this step
  // Sharing a sample's layers between threads: each share's part of the
  // neuron pass (neurons from `begin`, listed relative to it).
  struct PassShare {
    int64_t begin = 0;
    std::vector<int64_t> changed, spiked;
    std::vector<TrajectoryEvent> trajectory;
  };
  std::vector<bool> constant_after_first_;   // per node: output constant after step 1
  std::vector<StepConstants> later_steps_;   // steps 2..T
  std::vector<TrajectoryEvent> trajectory_;  // a replaying layer's changes, in neuron order
  int threads_;
  SharePolicy policy_;
  std::vector<PassShare> shares_;
};

}  // namespace

CpuEngine::CpuEngine(const Network& net, const SimConfig& config, const EngineOptions& options)
    : Engine(net, config, options), kernels_(cpu::cpu_kernel_set(options.cpu_kernels)) {
  if (options.cpu_threads < 0) throw std::invalid_argument("cpu_threads must be >= 0");
  if (options.cpu_share == CpuShare::All) share_policy_ = SharePolicy{0.0, 0};
  if (config_.coding == Coding::Window) {  // a separate code path (window_runner.cpp)
    window_ = std::make_unique<CpuWindowPlan>(net_, config_, std::string(kernels_.name) != "generic");
    return;
  }
  shares_layers_ = std::any_of(net_.nodes.begin(), net_.nodes.end(), [&](const Node& node) {
    return node.integrates() && node.size >= share_policy_.min_pass;
  });
  spiking_ = net_.spiking_nodes();
  spiking_slot_.assign(net_.nodes.size(), -1);
  for (size_t l = 0; l < spiking_.size(); ++l) spiking_slot_[spiking_[l]] = int(l);
  tables_.resize(net_.nodes.size());
  for (size_t i = 0; i < net_.nodes.size(); ++i) {
    const Node& node = net_.nodes[i];
    if (!node.integrates() && !node.open) continue;
    CpuNodeTables& t = tables_[i];
    // b * dt and pool cell counts per neuron, so the neuron pass is one flat loop
    const int64_t channels = node.geom.out_c;
    if (!node.open) t.bias_dt.assign(node.size, 0.0f);
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

const char* CpuEngine::kernels() const { return kernels_.name; }

void CpuEngine::run(const Input& in, const Results& out) const {
  check_run(in, out);
  if (in.on_device || out.first_spike_on_device)
    throw std::invalid_argument("the CPU engine takes input and results in host memory");
  if (in.samples == 0) return;
  if (options_.cpu_sums == CpuSums::Float32) run_samples<float>(in, out);
  else run_samples<double>(in, out);
}

template <typename Acc>
void CpuEngine::run_samples(const Input& in, const Results& out) const {
  const int64_t in_size = net_.nodes[0].size, samples = in.samples, first = in.sample_offset;
  const float* x = in.data;
  const int wanted = std::max(1, options_.cpu_threads > 0 ? options_.cpu_threads : max_threads());
  if (window_) {  // one sample per thread (cpu_share does not apply to this coding)
    window_->run(in, out, wanted);
    return;
  }
  // Fewer samples than threads: where the network has large layers, the
  // threads share each sample's, one sample after another.
  if (samples < wanted && shares_layers_) {
    SampleRunner<Acc> runner(net_, config_, kernels_, spiking_, spiking_slot_, tables_, wanted, share_policy_);
    for (int64_t n = 0; n < samples; ++n) runner.run(x + n * in_size, first + n, in.stream_offset + first + n, out);
    return;
  }
  // Otherwise the work is split by sample: more threads than samples would only wait.
  const int threads = int(std::min<int64_t>(wanted, samples));
#pragma omp parallel num_threads(threads)
  {
    SampleRunner<Acc> runner(net_, config_, kernels_, spiking_, spiking_slot_, tables_);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < samples; ++n) runner.run(x + n * in_size, first + n, in.stream_offset + first + n, out);
  }
}

}  // namespace ttfs
