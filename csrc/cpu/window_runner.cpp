#include "window_runner.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/neuron_step.h"
#include "../core/synapse.h"
#include "cpu_kernels.h"

namespace ttfs {

namespace {

// ---- the kernels: compiled for AVX2 and portably, chosen per engine (EngineOptions::cpu_kernels)

// Adds the ramp weights of this step's spikes of the inbound (ON +1, OFF -1)
// to the double accumulators (D(t) before its rounding).
TTFS_KERNEL void scatter_spikes_impl(const Node& node, const float* rows, const SpikeLists& in, double* acc) {
  const Geometry& g = node.geom;
  for (int sign = 0; sign < 2; ++sign) {
    const float a = sign ? -1.0f : 1.0f;
    const int64_t* list = sign ? in.off : in.on;
    const size_t count = sign ? in.off_count : in.on_count;
    for (size_t e = 0; e < count; ++e) {
      const int64_t j = list[e];
      switch (node.kind) {
        case NodeKind::Dense:
          scatter_change<NodeKind::Dense, true, false>(g, node.kernel.data(), j, a, 0.0f, acc, acc, AllOutputs{});
          break;
        case NodeKind::Conv2D:
          if (rows)
            scatter_conv_rows<true, false>(g, rows, j, a, 0.0f, acc, acc, AllOutputs{});
          else
            scatter_change<NodeKind::Conv2D, true, false>(g, node.kernel.data(), j, a, 0.0f, acc, acc, AllOutputs{});
          break;
        case NodeKind::DepthwiseConv2D:
          scatter_change<NodeKind::DepthwiseConv2D, true, false>(g, node.kernel.data(), j, a, 0.0f, acc, acc,
                                                                 AllOutputs{});
          break;
        default:  // AveragePooling2D: counts the arrivals
          scatter_change<NodeKind::AveragePooling2D, true, false>(g, nullptr, j, a, 0.0f, acc, acc, AllOutputs{});
      }
    }
  }
}

// The fused pass of a windowed layer at step t over n neurons:
// window_neuron_step for each. Before the window (t < W) D(t) is rounded
// once from acc (cleared) and no neuron can fire; in it (t >= W) nothing
// arrives and fired[i] = 1 where neuron i fires. Returns how many fired.
// Two flat loops over restrict pointers without calls, so that both vectorise.
TTFS_KERNEL int64_t window_pass_impl(const WindowPass& p, int64_t n) {
  const int t = p.t, W = p.W, R = p.R;
  const bool zero_spikes = p.zero_spikes;
  const float* __restrict theta = p.theta;
  float* __restrict V = p.V;
  float* __restrict I = p.I;
  int* __restrict s = p.s;
  if (t < W) {
    double* __restrict acc = p.acc;
    const float* __restrict weight = p.weight;
    if (weight) {
      for (int64_t i = 0; i < n; ++i) {
        const float d = window_pool_increment(acc[i], weight[i]);
        acc[i] = 0.0;
        window_neuron_step(t, W, R, d, theta[i], zero_spikes, V[i], I[i], s[i]);
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const float d = float(acc[i]);
        acc[i] = 0.0;
        window_neuron_step(t, W, R, d, theta[i], zero_spikes, V[i], I[i], s[i]);
      }
    }
    return 0;
  }
  uint8_t* __restrict fired = p.fired;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool fire = window_neuron_step(t, W, R, 0.0f, theta[i], zero_spikes, V[i], I[i], s[i]);
    fired[i] = uint8_t(fire);
    count += fire;
  }
  return count;
}

// The output before its read step: steps 1-2 (acc cleared).
TTFS_KERNEL void output_pass_impl(double* acc, float* V, float* I, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = float(acc[i]);
    acc[i] = 0.0;
    window_output_step(d, V[i], I[i]);
  }
}

void scatter_generic(const Node& node, const float* rows, const SpikeLists& in, double* acc) {
  scatter_spikes_impl(node, rows, in, acc);
}
int64_t window_pass_generic(const WindowPass& p, int64_t n) { return window_pass_impl(p, n); }
void output_pass_generic(double* acc, float* V, float* I, int64_t n) { output_pass_impl(acc, V, I, n); }
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2"))) void scatter_avx2(const Node& node, const float* rows, const SpikeLists& in,
                                                  double* acc) {
  scatter_spikes_impl(node, rows, in, acc);
}
__attribute__((target("avx2"))) int64_t window_pass_avx2(const WindowPass& p, int64_t n) {
  return window_pass_impl(p, n);
}
__attribute__((target("avx2"))) void output_pass_avx2(double* acc, float* V, float* I, int64_t n) {
  output_pass_impl(acc, V, I, n);
}
#endif

}  // namespace

const WindowKernels& window_kernels(bool avx2) {
  static const WindowKernels generic{scatter_generic, window_pass_generic, output_pass_generic};
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const WindowKernels with_avx2{scatter_avx2, window_pass_avx2, output_pass_avx2};
  if (avx2) return with_avx2;
#endif
  return generic;
}

namespace {

// One sample's state of one node.
struct NodeRun {
  std::vector<int64_t> on, off;  // elements that spike at this step (OFF: the signed input's)
  std::vector<float> V, I;       // integrating layers: membrane and slope
  std::vector<int> s;            // spiking layers: spike step (0: not fired)
  std::vector<double> acc;       // integrating layers: this step's D, summed in double
  bool active = false;           // integrating layers: has had input, or its window is open
  // Gather: delayed spikes, one slot per step modulo the ring
  std::vector<std::vector<int64_t>> pending_on, pending_off;
};

// Simulates one sample at a time (one per thread).
class WindowRunner {
 public:
  WindowRunner(const Network& net, const SimConfig& cfg, const std::vector<int>& slot,
               const std::vector<CpuWindowPlan::NodeTables>& tables, const WindowKernels& kernels)
      : net_(net), cfg_(cfg), w_(cfg.window), slot_(slot), tables_(tables), state_(net.nodes.size()),
        kernels_(kernels) {
    int64_t largest = 0;
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      NodeRun& r = state_[i];
      largest = std::max(largest, node.size);
      if (node.integrates()) {
        r.V.resize(node.size);
        r.I.resize(node.size);
        r.acc.resize(node.size);
      }
      if (node.is_spiking()) r.s.resize(node.size);
      if (node.kind == NodeKind::Gather || node.open) {
        r.pending_on.resize(size_t(tables[i].ring));
        r.pending_off.resize(size_t(tables[i].ring));
      }
    }
    merge_ = net.merge_targets();
    fired_.resize(size_t(largest));
    y_.resize(size_t(net.num_classes()));
    layers_ = size_t(std::count_if(slot.begin(), slot.end(), [](int l) { return l >= 0; }));
  }

  void run(const float* x, int64_t row, const Results& out) {
    reset();
    const int steps = cfg_.steps, read = w_.read_step;
    double* synops = out.synops + row * steps;
    int64_t* spikes = out.spike_counts + row * int64_t(layers_);
    std::fill(synops, synops + steps, 0.0);
    std::fill(spikes, spikes + layers_, int64_t(0));
    first_.assign(layers_, nullptr);
    for (size_t i = 0; i < net_.nodes.size(); ++i) {
      const int l = slot_[i];
      if (l < 0 || out.first_spike.empty()) continue;
      const int64_t size = net_.nodes[i].size;
      first_[size_t(l)] = out.first_spike[size_t(l)] + row * size;
      std::fill(first_[size_t(l)], first_[size_t(l)] + size, 0.0f);
    }
    encode_input(x);
    for (int t = 1; t <= read; ++t) {
      double ops = 0.0;
      for (size_t i = 0; i < net_.nodes.size(); ++i) {
        const Node& node = net_.nodes[i];
        NodeRun& r = state_[i];
        r.on.clear();
        r.off.clear();
        if (node.open) {
          group_step(node, i, r, t);
          continue;
        }
        switch (node.kind) {
          case NodeKind::Input: input_step(node, r, t, ops); break;
          case NodeKind::Gather: gather_step(node, i, r, t); break;
          case NodeKind::MaxPooling2D: maxpool_step(node, i, r, t, ops, spikes); break;
          default: layer_step(node, i, r, t, ops, spikes); break;
        }
      }
      synops[t - 1] = ops;
    }
    // The decision, made once at R_out: argmax y (lowest index on exact ties).
    const int64_t classes = net_.num_classes();
    int64_t best = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (y_[c] > y_[best]) best = c;
    int32_t* counts = out.counts + row * classes * steps;
    for (int64_t c = 0; c < classes; ++c)
      for (int t = 1; t <= steps; ++t) counts[c * steps + (t - 1)] = (c == best && t >= read) ? 1 : 0;
    if (out.output_membrane) std::copy(y_.begin(), y_.end(), out.output_membrane + row * classes);
    out.stop_step[row] = cfg_.early_stop ? read : steps;
  }

 private:
  void reset() {
    for (size_t i = 0; i < net_.nodes.size(); ++i) {
      NodeRun& r = state_[i];
      std::fill(r.V.begin(), r.V.end(), 0.0f);
      std::fill(r.I.begin(), r.I.end(), 0.0f);
      std::fill(r.s.begin(), r.s.end(), 0);
      std::fill(r.acc.begin(), r.acc.end(), 0.0);
      r.active = false;
      for (auto& p : r.pending_on) p.clear();
      for (auto& p : r.pending_off) p.clear();
    }
  }

  // "Input": every element's level and spike step, as lists per step (in element order).
  void encode_input(const float* x) {
    const int64_t n = net_.nodes[0].size;
    const int ref = w_.input_ref();
    input_start_.assign(size_t(2 * (ref + 1) + 1), 0);  // ON steps 0..ref, then OFF steps 0..ref
    input_order_.resize(size_t(2 * n));
    step_of_.resize(size_t(2 * n));
    for (int64_t j = 0; j < n; ++j) {
      for (int sign = 0; sign < 2; ++sign) {
        int step = 0;  // not firing
        if (sign == 0 || w_.signed_input) {
          const int k = window_input_level(sign ? -x[j] : x[j], w_.input_gain, w_.input_steps);
          if (k > 0 || w_.zero_spikes) step = ref - k;
        }
        step_of_[size_t(sign * n + j)] = sign * (ref + 1) + step;
        ++input_start_[size_t(sign * (ref + 1) + step + 1)];
      }
    }
    for (size_t b = 1; b < input_start_.size(); ++b) input_start_[b] += input_start_[b - 1];
    std::vector<int64_t> fill(input_start_.begin(), input_start_.end() - 1);
    for (int64_t e = 0; e < 2 * n; ++e) input_order_[size_t(fill[size_t(step_of_[size_t(e)])]++)] = e % n;
  }

  void input_step(const Node& node, NodeRun& r, int t, double& ops) {
    if (t > w_.input_ref()) return;
    const int ref = w_.input_ref();
    for (int sign = 0; sign < 2; ++sign) {
      const size_t b = size_t(sign * (ref + 1) + t);
      std::vector<int64_t>& list = sign ? r.off : r.on;
      for (int64_t e = input_start_[b]; e < input_start_[b + 1]; ++e) {
        const int64_t j = input_order_[size_t(e)];
        list.push_back(j);
        ops += node.fanout[size_t(j)];  // the input spikes in this coding: its operations count
      }
    }
  }

  // Flatten, Reshape, ZeroPadding2D, UpSampling2D, Concatenate: the inbound
  // spikes, rearranged, each inbound's delayed by its delay (WINDOW_SEMANTICS.md "Timeline").
  void gather_step(const Node& node, size_t index, NodeRun& r, int t) {
    const CpuWindowPlan::NodeTables& tb = tables_[index];
    for (size_t k = 0; k < node.inbound.size(); ++k) {
      const NodeRun& in = state_[size_t(node.inbound[k])];
      const size_t slot = size_t((t + node.window.delay[k]) % tb.ring);
      for (int sign = 0; sign < 2; ++sign) {
        std::vector<int64_t>& to = sign ? r.pending_off[slot] : r.pending_on[slot];
        for (const int64_t j : sign ? in.off : in.on) {
          const int64_t row = tb.inbound_begin[k] + j;
          to.insert(to.end(), tb.outputs.begin() + tb.first_output[size_t(row)],
                    tb.outputs.begin() + tb.first_output[size_t(row) + 1]);
        }
      }
    }
    take_due(r, t, tb.ring);
  }

  // A delaying node's spikes of step t: the ring's slot for t becomes its lists
  // (read by the nodes after it) and is emptied for t + ring.
  static void take_due(NodeRun& r, int t, int ring) {
    const size_t now = size_t(t % ring);
    r.on.swap(r.pending_on[now]);
    r.off.swap(r.pending_off[now]);
    r.pending_on[now].clear();
    r.pending_off[now].clear();
  }

  // A synapse group of a residual Add (WINDOW_SEMANTICS.md "Add"): its
  // source's spikes, delayed by the group's delay, scattered through the
  // group's ramp weights into the Add's D(t) while the Add's window is not open.
  void group_step(const Node& node, size_t index, NodeRun& r, int t) {
    const size_t target = size_t(merge_[index]);
    const int W = net_.nodes[target].window.start, delay = node.window.delay[0];
    if (t >= W) return;  // from W on, the Add's slope is 1 whatever arrives
    const NodeRun& in = state_[size_t(node.inbound[0])];
    const std::vector<int64_t>*on = &in.on, *off = &in.off;
    if (delay > 0) {
      const CpuWindowPlan::NodeTables& tb = tables_[index];
      const size_t later = size_t((t + delay) % tb.ring);
      if (t + delay < W) {  // (later arrivals change nothing)
        r.pending_on[later].insert(r.pending_on[later].end(), in.on.begin(), in.on.end());
        r.pending_off[later].insert(r.pending_off[later].end(), in.off.begin(), in.off.end());
      }
      take_due(r, t, tb.ring);  // (this node's own lists are read by no one else)
      on = &r.on;
      off = &r.off;
    }
    if (on->empty() && off->empty()) return;
    const std::vector<float>& rows = tables_[index].rows;
    NodeRun& add = state_[target];
    kernels_.scatter(node, rows.empty() ? nullptr : rows.data(),
                     SpikeLists{on->data(), on->size(), off->data(), off->size()}, add.acc.data());
    add.active = true;
  }

  // The spikes of the neurons in `list` at step t, in its order: counts, synaptic
  // operations (their fan-out) and first-spike times.
  void record(size_t index, const Node& node, const std::vector<int64_t>& list, int t, double& ops,
                  int64_t* spikes) {
    const int l = slot_[index];
    spikes[l] += int64_t(list.size());
    const double* fanout = node.fanout.data();
    for (const int64_t i : list) ops += fanout[i];
    float* first = first_[size_t(l)];
    if (!first) return;
    const float tau = mul_rn(float(t), cfg_.dt);  // tau = f32(t) * f32(dt)
    for (const int64_t i : list) first[i] = tau;
  }

  // MaxPooling2D: the first input spike of a pooling window is the output spike.
  void maxpool_step(const Node& node, size_t index, NodeRun& r, int t, double& ops, int64_t* spikes) {
    if (t > node.window.ref) return;
    const Geometry& g = node.geom;
    for (const int64_t j : state_[size_t(node.inbound[0])].on) {
      const ElementPosition e = element_position(g, j);
      for_each_window(g, e.iy, e.ix, [&](int64_t pos, int) {
        const int64_t o = pos * g.out_c + e.c;
        if (r.s[size_t(o)] != 0) return;
        r.s[size_t(o)] = t;
        r.on.push_back(o);
      });
    }
    record(index, node, r.on, t, ops, spikes);
  }

  // A weighted layer or average pooling: D(t) from this step's arrivals, then
  // the fused neuron pass (a windowed layer) or steps 1-2 and the read (the output).
  void layer_step(const Node& node, size_t index, NodeRun& r, int t, double& ops, int64_t* spikes) {
    const int W = node.window.start, R = node.window.ref;
    if (t > R) return;  // its window is over: nothing changes any more
    const NodeRun& in = state_[size_t(node.inbound[0])];  // (an Add's groups scattered before it)
    const bool before = t < W;
    if (before && node.kind != NodeKind::Add && (!in.on.empty() || !in.off.empty())) {
      const std::vector<float>& rows = tables_[index].rows;
      kernels_.scatter(node, rows.empty() ? nullptr : rows.data(),
                       SpikeLists{in.on.data(), in.on.size(), in.off.data(), in.off.size()}, r.acc.data());
      r.active = true;
    }
    if (!before) r.active = true;
    if (!r.active) return;  // V = I = 0 and nothing arrives: nothing changes
    const int64_t n = node.size;
    if (index + 1 == net_.nodes.size()) {  // the output: integrates, never fires, read at R_out
      kernels_.output_pass(r.acc.data(), r.V.data(), r.I.data(), n);
      if (t == R)
        for (int64_t i = 0; i < n; ++i)
          y_[size_t(i)] = window_output_value(r.V[size_t(i)],
                                              node.bias.empty() ? 0.0f : node.bias[size_t(i % node.geom.out_c)]);
      return;
    }
    const WindowPass p{t, W, R, w_.zero_spikes, r.acc.data(),
                       node.kind == NodeKind::AveragePooling2D ? node.window.weight.data() : nullptr,
                       tables_[index].theta.data(), r.V.data(), r.I.data(), r.s.data(), fired_.data()};
    const int64_t count = kernels_.window_pass(p, n);  // 0 before the window: no neuron fires there
    if (count == 0) return;
    // the neurons that fired, in increasing order, found 8 flags at a time
    r.on.resize(size_t(count) + 8);  // room for the candidates written past the last one
    int64_t* to = r.on.data();
    const uint8_t* fired = fired_.data();
    int64_t i = 0, found = 0;
    for (; i + 8 <= n && found < count; i += 8) {
      uint64_t word;
      std::memcpy(&word, fired + i, 8);
      if (word != 0)
        for (int64_t b = i; b < i + 8; ++b) {
          to[found] = b;
          found += fired[b];
        }
    }
    for (; found < count; ++i) {
      to[found] = i;
      found += fired[i];
    }
    r.on.resize(size_t(count));
    record(index, node, r.on, t, ops, spikes);
  }

  const Network& net_;
  const SimConfig& cfg_;
  const WindowConfig& w_;
  const std::vector<int>& slot_;
  const std::vector<CpuWindowPlan::NodeTables>& tables_;
  std::vector<NodeRun> state_;
  const WindowKernels& kernels_;
  std::vector<int> merge_;                // per node: the Add an open node feeds (-1: none)
  std::vector<uint8_t> fired_;            // a layer's pass: which neurons fired
  std::vector<float> y_;                  // the output's read-out values
  std::vector<float*> first_;             // this sample's first-spike rows per spiking layer (or null)
  size_t layers_ = 0;                     // spiking layers
  std::vector<int64_t> input_start_, input_order_, step_of_;  // the input's spikes by step
};

}  // namespace

CpuWindowPlan::CpuWindowPlan(const Network& net, const SimConfig& config, bool avx2)
    : net_(net), cfg_(config), kernels_(window_kernels(avx2)) {
  const WindowConfig& w = config.window;
  const std::vector<int> spiking = net.spiking_nodes();
  slot_.assign(net.nodes.size(), -1);
  for (size_t l = 0; l < spiking.size(); ++l) slot_[size_t(spiking[l])] = int(l);
  if (w.input_steps < 1 || w.read_step < 1 || !(w.input_gain > 0.0))
    throw std::invalid_argument("window coding: invalid input steps, gain or read step");
  if (config.steps < w.read_step)
    throw std::invalid_argument("window coding: the output is read at step " + std::to_string(w.read_step) +
                                ", but the run has only " + std::to_string(config.steps) + " steps");
  if (int64_t(net.nodes[0].fanout.size()) != net.nodes[0].size || net.nodes[0].window.ref != w.input_ref())
    throw std::invalid_argument("window coding: the input node lacks its window constants (Network.set_window)");
  tables_.resize(net.nodes.size());
  for (size_t i = 1; i < net.nodes.size(); ++i) {
    const Node& node = net.nodes[i];
    NodeTables& t = tables_[i];
    const bool output = i + 1 == net.nodes.size();
    if (node.is_spiking() && node.window.ref < 1)
      throw std::invalid_argument("window coding: node '" + node.name + "' lacks its window constants");
    if (output && (!node.integrates() || node.window.ref != w.read_step))
      throw std::invalid_argument("window coding: the output must be a weighted layer read at R_out");
    if (node.integrates() && !output) {
      if (node.window.theta.size() != size_t(node.geom.out_c))
        throw std::invalid_argument("window coding: node '" + node.name + "' lacks its thresholds");
      t.theta.resize(size_t(node.size));
      for (int64_t n = 0; n < node.size; ++n) t.theta[size_t(n)] = node.window.theta[size_t(n % node.geom.out_c)];
    }
    if (node.open) {
      if (node.window.delay.size() != 1)
        throw std::invalid_argument("window coding: synapse group '" + node.name + "' lacks its delay");
      t.ring = 1 + node.window.delay[0];
    }
    if (node.kind == NodeKind::Conv2D && conv_rows_apply(node.geom)) {
      t.rows.resize(node.kernel.size());
      conv_row_layout(node.geom, node.kernel.data(), t.rows.data());
    }
    if (node.kind == NodeKind::Gather) {
      if (node.window.delay.size() != node.inbound.size())
        throw std::invalid_argument("window coding: gather '" + node.name + "' lacks its delays");
      t.ring = 1 + *std::max_element(node.window.delay.begin(), node.window.delay.end());
      // CSR: for every element of every inbound, the outputs that copy it (in increasing order)
      t.inbound_begin.assign(node.inbound.size() + 1, 0);
      for (size_t k = 0; k < node.inbound.size(); ++k)
        t.inbound_begin[k + 1] = t.inbound_begin[k] + net.nodes[size_t(node.inbound[k])].size;
      t.first_output.assign(size_t(t.inbound_begin.back()) + 1, 0);
      for (int64_t o = 0; o < node.size; ++o)
        if (node.gather_input[size_t(o)] >= 0)
          ++t.first_output[size_t(t.inbound_begin[size_t(node.gather_input[size_t(o)])] + node.gather_element[size_t(o)] + 1)];
      for (size_t e = 1; e < t.first_output.size(); ++e) t.first_output[e] += t.first_output[e - 1];
      t.outputs.resize(size_t(t.first_output.back()));
      std::vector<int64_t> fill(t.first_output.begin(), t.first_output.end() - 1);
      for (int64_t o = 0; o < node.size; ++o) {
        const int k = node.gather_input[size_t(o)];
        if (k >= 0) t.outputs[size_t(fill[size_t(t.inbound_begin[size_t(k)] + node.gather_element[size_t(o)])]++)] = o;
      }
    }
  }
}

void CpuWindowPlan::run(const Input& in, const Results& out, int threads) const {
  const int64_t in_size = net_.nodes[0].size, samples = in.samples, first = in.sample_offset;
  const int used = int(std::max<int64_t>(1, std::min<int64_t>(threads, samples)));
#pragma omp parallel num_threads(used)
  {
    WindowRunner runner(net_, cfg_, slot_, tables_, kernels_);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < samples; ++n) runner.run(in.data + n * in_size, first + n, out);
  }
}

}  // namespace ttfs
