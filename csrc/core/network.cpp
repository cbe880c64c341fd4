#include "network.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace ttfs {

namespace {
void require(bool ok, const Node& node, const std::string& what) {
  if (!ok) throw std::invalid_argument("node '" + node.name + "': " + what);
}
}  // namespace

void validate_node(const Network& net, const Node& node) {
  const int index = int(net.nodes.size());  // the node is about to be appended
  const Geometry& g = node.geom;
  require(node.size > 0, node, "empty output");
  for (int src : node.inbound) require(src >= 0 && src < index, node, "inbound index out of range");
  require(g.in_h > 0 && g.in_w > 0 && g.in_c > 0 && g.out_h > 0 && g.out_w > 0 && g.out_c > 0 &&
              g.kernel_h > 0 && g.kernel_w > 0 && g.stride_h > 0 && g.stride_w > 0 &&
              g.dilation_h > 0 && g.dilation_w > 0 && g.pad_top >= 0 && g.pad_left >= 0 &&
              g.multiplier > 0,
          node, "invalid geometry");
  // (element indices are 32-bit in the synaptic kernels)
  const int64_t limit = int64_t(1) << 31;
  require(node.size < limit && int64_t(g.in_h) * g.in_w < limit && int64_t(g.in_h) * g.in_w * g.in_c < limit,
          node, "more than 2^31 elements in one layer");
  switch (node.kind) {
    case NodeKind::Input:
      require(index == 0 && node.inbound.empty(), node, "the input must be node 0");
      return;
    case NodeKind::Gather: {
      require(!node.inbound.empty(), node, "gather without inputs");
      require(int64_t(node.gather_input.size()) == node.size &&
                  int64_t(node.gather_element.size()) == node.size,
              node, "gather map size differs from the node size");
      for (int64_t i = 0; i < node.size; ++i) {
        const int src = node.gather_input[i];
        if (src < 0) continue;
        require(src < int(node.inbound.size()), node, "gather map names a missing inbound");
        const int64_t e = node.gather_element[i];
        require(e >= 0 && e < net.nodes[node.inbound[src]].size, node, "gather element out of range");
      }
      return;
    }
    default:
      break;
  }
  // Only an Add reads an open node, and only one Add reads each.
  for (int src : node.inbound) {
    if (!net.nodes[src].open) continue;
    require(node.kind == NodeKind::Add, node, "reads an open node (only an Add may)");
    for (const Node& other : net.nodes)
      for (int k : other.inbound) require(k != src, node, "reads an open node that another node reads");
  }
  if (node.kind == NodeKind::Add) {
    require(!node.open && !node.inbound.empty(), node, "an Add needs inbound synapse groups");
    for (size_t a = 0; a < node.inbound.size(); ++a) {
      const Node& group = net.nodes[node.inbound[a]];
      require(group.open && group.size == node.size, node, "an Add's inbound must be open nodes of its size");
      for (size_t b = 0; b < a; ++b) require(node.inbound[b] != node.inbound[a], node, "reads a group twice");
    }
    require(g.in_size() == node.size && node.size == g.out_size(), node, "Add geometry");
    require(node.kernel.empty() && node.pool_count.empty(), node, "an Add has no kernel of its own");
    require(node.bias.empty() || int64_t(node.bias.size()) == g.out_c, node, "bias size");
  } else {
    require(index > 0 && node.inbound.size() == 1, node, "a layer needs exactly one inbound node");
    require(net.nodes[node.inbound[0]].size == g.in_size(), node, "input size differs from the inbound node");
  }
  require(node.size == g.out_size(), node, "output size differs from the geometry");
  if (node.open) {
    require(node.kind == NodeKind::Dense || node.kind == NodeKind::Conv2D || node.kind == NodeKind::DepthwiseConv2D,
            node, "only a weighted node can be open");
    require(node.fanout.empty() && node.bias.empty() && !node.softmax, node,
            "an open node has no fan-out, bias or softmax (its Add has)");
  } else {
    require(int64_t(node.fanout.size()) == node.size, node, "fan-out array has the wrong size");
  }
  // Synaptic operations are sums of fan-outs that the CUDA engine adds in any
  // order: exact (so deterministic) while every fan-out is a whole number and
  // a layer's total stays below 2^53.
  double fanout_total = 0.0;
  for (double f : node.fanout) {
    require(f >= 0.0 && f == std::floor(f), node, "fan-outs must be non-negative whole numbers");
    fanout_total += f;
  }
  require(fanout_total < 9007199254740992.0, node, "fan-outs sum to 2^53 or more");
  const int64_t taps = int64_t(g.kernel_h) * g.kernel_w;
  switch (node.kind) {
    case NodeKind::Dense:
      require(g.in_h == g.out_h && g.in_w == g.out_w && g.out_c == g.multiplier, node, "dense geometry");
      require(int64_t(node.kernel.size()) == int64_t(g.in_c) * g.multiplier, node, "kernel size");
      break;
    case NodeKind::Conv2D:
      require(g.out_c == g.multiplier, node, "conv output channels differ from filters");
      require(int64_t(node.kernel.size()) == taps * g.in_c * g.multiplier, node, "kernel size");
      break;
    case NodeKind::DepthwiseConv2D:
      require(g.out_c == g.in_c * g.multiplier, node, "depthwise output channels");
      require(int64_t(node.kernel.size()) == taps * g.in_c * g.multiplier, node, "kernel size");
      break;
    case NodeKind::AveragePooling2D:
      require(int64_t(node.pool_count.size()) == int64_t(g.out_h) * g.out_w, node, "pool counts size");
      for (float c : node.pool_count) require(c >= 1.0f, node, "pool count below 1");
      [[fallthrough]];
    case NodeKind::MaxPooling2D:
      require(g.out_c == g.in_c, node, "pooling changes the channel count");
      break;
    case NodeKind::Add:
      break;
    default:
      require(false, node, "unknown node kind");
  }
  if (node.kind == NodeKind::Dense || node.kind == NodeKind::Conv2D ||
      node.kind == NodeKind::DepthwiseConv2D) {
    require(node.bias.empty() || int64_t(node.bias.size()) == g.out_c, node, "bias size");
  }
  require(!node.softmax || node.kind == NodeKind::Dense || node.kind == NodeKind::Conv2D ||
              node.kind == NodeKind::DepthwiseConv2D,
          node, "softmax output on a layer without weights");
}

void set_window(Network& net, int index, const WindowNode& window) {
  if (index < 0 || index >= int(net.nodes.size())) throw std::invalid_argument("set_window: no node " + std::to_string(index));
  Node& node = net.nodes[size_t(index)];
  const bool output = index + 1 == int(net.nodes.size());
  const bool windowed = node.integrates() && !output;
  require(window.start >= 0 && window.ref >= window.start, node, "window: start after its reference step");
  require(int64_t(window.theta.size()) == (windowed ? int64_t(node.geom.out_c) : 0), node,
          "window: one threshold per channel of a windowed layer, none elsewhere");
  require(int64_t(window.weight.size()) == (windowed && node.kind == NodeKind::AveragePooling2D ? node.size : 0),
          node, "window: one ramp weight per neuron of an average pooling, none elsewhere");
  require(window.delay.size() == (node.kind == NodeKind::Gather ? node.inbound.size() : node.open ? 1 : 0), node,
          "window: one delay per inbound of a gather, one for a synapse group of an Add, none elsewhere");
  for (int d : window.delay) require(d >= 0, node, "window: negative delay");
  require(!node.softmax, node, "window: the output is read, not a softmax");
  require(node.kind != NodeKind::Input || int64_t(node.fanout.size()) == node.size, node,
          "window: the input spikes, so it needs its fan-outs");
  for (double f : node.fanout)  // (as validate_node requires of the layers': exact sums in any order)
    require(f >= 0.0 && f == std::floor(f), node, "fan-outs must be non-negative whole numbers");
  node.window = window;
}

}  // namespace ttfs
