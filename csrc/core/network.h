// The network as the native backends see it: a list of nodes in topological
// order, built by python/ttfs_native/plan.py. Node 0 is the input. Structural
// layers (Flatten, Reshape, ZeroPadding2D, Concatenate) arrive as Gather
// nodes with an index map. A residual Add (SEMANTICS.md "Add") arrives as
// *open* nodes, one synapse group per inbound (a Dense, Conv2D or
// DepthwiseConv2D node without neurons; an identity inbound as a 1x1
// depthwise one), each read only by the Add node after them, whose neurons
// integrate the sums of all of its groups.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttfs {

enum class NodeKind : int {
  Input = 0,
  Dense = 1,
  Conv2D = 2,
  DepthwiseConv2D = 3,
  AveragePooling2D = 4,
  MaxPooling2D = 5,
  Gather = 6,
  Add = 7,
};

// Channels-last geometry of a layer with a single input. Dense acts on the
// last axis: in_h * in_w positions of in_c features each.
struct Geometry {
  int in_h = 1, in_w = 1, in_c = 1;
  int out_h = 1, out_w = 1, out_c = 1;
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;
  int pad_top = 0, pad_left = 0;
  int multiplier = 1;  // Dense units, Conv2D filters, DepthwiseConv2D depth multiplier

  int64_t in_size() const { return int64_t(in_h) * in_w * in_c; }
  int64_t out_size() const { return int64_t(out_h) * out_w * out_c; }
};

// A node's part of the window coding's plan (docs/WINDOW_SEMANTICS.md,
// "Timeline" and "Constants"; simulation/window_plan.py), unused by the
// original coding. Steps are integers from 1.
struct WindowNode {
  int start = 0;              // windowed layer: W, its window's first step; output: R_out
  int ref = 0;                // R: windowed layer, its window's last step; input, max pooling:
                              // their level-0 step; output: R_out. The node changes nothing after it.
  std::vector<float> theta;   // windowed weighted layer and average pooling: threshold per channel
  std::vector<float> weight;  // AveragePooling2D: ramp weight per neuron
  std::vector<int> delay;     // Gather: steps added to the spikes of each inbound (Concatenate);
                              // an open node (an Add's synapse group): to its input's spikes
};

struct Node {
  NodeKind kind = NodeKind::Input;
  std::string name;
  std::vector<int> inbound;        // node indices, earlier in the list
  Geometry geom;
  int64_t size = 0;                // number of output elements
  bool softmax = false;            // stochastic softmax output layer
  std::vector<float> kernel;       // Keras layout, flattened
  std::vector<float> bias;         // as stored (multiplied by dt per run)
  std::vector<float> pool_count;   // AveragePooling2D: cells per window (out_h*out_w)
  std::vector<int32_t> gather_input;    // Gather: which inbound (-1: zero padding)
  std::vector<int64_t> gather_element;  // Gather: element in that inbound
  std::vector<double> fanout;      // spiking nodes (and the window coding's input): synaptic ops per spike
  WindowNode window;               // the window coding's constants (Network::set_window)
  // A synapse group of the Add that reads it: no neurons, no output; its
  // synaptic input goes into the Add's sums (Dense, Conv2D, DepthwiseConv2D).
  bool open = false;

  bool is_spiking() const {
    return kind != NodeKind::Input && kind != NodeKind::Gather && !open;
  }
  bool integrates() const { return is_spiking() && kind != NodeKind::MaxPooling2D; }
};

struct Network {
  std::vector<Node> nodes;
  int64_t num_classes() const { return nodes.empty() ? 0 : nodes.back().size; }
  // For each node: the Add that reads it if it is open, else -1.
  std::vector<int> merge_targets() const {
    std::vector<int> out(nodes.size(), -1);
    for (int i = 0; i < int(nodes.size()); ++i)
      if (nodes[i].kind == NodeKind::Add)
        for (int src : nodes[i].inbound) out[src] = i;
    return out;
  }
  std::vector<int> spiking_nodes() const {
    std::vector<int> out;
    for (int i = 0; i < int(nodes.size()); ++i)
      if (nodes[i].is_spiking()) out.push_back(i);
    return out;
  }
};

// Sets node `index`'s window-coding constants (the kernel of a weighted
// layer holds the ramp weights then, its bias only the output's b_o);
// throws std::invalid_argument if they do not fit the node.
void set_window(Network& net, int index, const WindowNode& window);

// Throws std::invalid_argument if the node is inconsistent (checked once,
// when the plan is built, so the kernels can trust the indices).
void validate_node(const Network& net, const Node& node);

}  // namespace ttfs
