// CUDA backend. Per batch: clear the per-sample flags, copy the input, then
// replay one captured CUDA graph per time step (one kernel per node, the
// readout, and a kernel that advances the device-side step counter), then
// copy the results back once. Synaptic input is event-driven: every output
// element that changes is stamped with the step and its old values, and a
// layer adds only the stamped inputs of its fan-in to running double sums
// (Conv2D and Dense layers with more than 32 input channels find them
// through per-cell lists of changed channels, cell_changes_kernel). TTFS_CUDA_SYNAPSES=gather instead re-gathers the
// whole fan-in whenever the inbound node changed (the first design, kept for
// comparison and as a fallback). All state lives in device buffers allocated
// once per batch capacity and reused across runs; the weights are copied to
// the device once, by the constructor. See step_kernels.cuh for the kernels.
#include "engine_cuda.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "device_buffer.cuh"
#include "layer_kernels.cuh"
#include "step_kernels.cuh"

namespace ttfs {

namespace cuda {
namespace {

constexpr int64_t kMaxChunk = 65535;  // samples per chunk: gridDim.y limit
constexpr int kEarlyStopPoll = 8;     // steps between checks whether every sample stopped
constexpr int kMaxCachedGraphs = 4;   // step graphs kept, one per chunk size
constexpr int kMinStopWindow = 8;     // layer-major early stop: the shortest default window

int blocks_for(int64_t count, int per_block) { return int((count + per_block - 1) / per_block); }

std::string human_bytes(size_t bytes) {
  char text[32];
  if (bytes < (size_t(1) << 20))
    std::snprintf(text, sizeof text, "%.1f KiB", double(bytes) / 1024.0);
  else
    std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / double(1 << 20));
  return text;
}

// A node's constants on the device and its place in the shared buffers.
struct DeviceNode {
  int size = 0;
  bool softmax = false;
  int64_t signal_offset = 0;  // first element in a sample's signal/prospective row
  int slot = -1;              // spiking layers: index among them (result order)
  int state_fields = 0;       // float state per neuron (IntegratingField / MaxPoolField)
  int record_blocks = 0;      // blocks of the kernel that records its spikes
  int partial_offset = 0;     // its first partial sum in a sample's partials
  DeviceBuffer<float> kernel, bias_dt, pool_count;
  DeviceBuffer<double> fanout;
  DeviceBuffer<int> inbound;             // Gather: inbound node indices
  DeviceBuffer<int64_t> gather_source;   // Gather: offset in the row, -1 = zero padding
  DeviceBuffer<int> source_node, source_element;  // Gather (layer-major): inbound node (-1: padding), element
  int words = 0;                         // layer-major: words of one step's history plane
};

// Everything whose size is proportional to the samples of a chunk.
struct BatchBuffers {
  int64_t capacity = 0;
  DeviceBuffer<float> x;                          // [sample][input size]
  DeviceBuffer<float> signal, prospective;        // [sample][row]
  DeviceBuffer<int> stamp;                        // [sample][row]: step of the last change
  DeviceBuffer<float> old_signal, old_prospective;  // [sample][row]: values before it
  DeviceBuffer<int> flags;                        // [sample][flag_row]
  std::vector<DeviceBuffer<float>> state;         // per node: [field][sample][size]
  std::vector<DeviceBuffer<double>> sums;         // event-driven layers: [2][sample][size]
  std::vector<DeviceBuffer<int>> cell_count;      // ... Conv2D, Dense: [sample][input cells]
  std::vector<DeviceBuffer<int>> cell_list;       // ... [sample][input cells][in_c]
  std::vector<DeviceBuffer<float>> first_spike;   // per spiking layer: [sample][size]
  DeviceBuffer<int> partial_spikes;               // [sample][partial_stride]
  DeviceBuffer<double> partial_ops;               // [sample][partial_stride]
  DeviceBuffer<int64_t> spike_counts;             // [sample][layers]
  DeviceBuffer<double> synops;                    // [sample][steps]
  DeviceBuffer<int> class_count;                  // [sample][classes]
  DeviceBuffer<int> counts;                       // [sample][classes][steps]
  DeviceBuffer<int> stop_step;                    // [sample]
  // Layer-major schedule (layer_kernels.cuh): every node's output history.
  // Per history slot (nodes whose readers are done pass theirs on, history_slot):
  std::vector<DeviceBuffer<uint32_t>> planes;     // [sample][planes][steps][words]
  std::vector<DeviceBuffer<int>> on_step;         // [sample][size]
  std::vector<DeviceBuffer<float>> on_value, p_value;  // [sample][size]
  DeviceBuffer<int> first_on;                     // [sample][nodes]
  DeviceBuffer<int> changed;                      // [node][capacity][steps]: any element changed
  DeviceBuffer<uint8_t> out_on;                   // softmax output: [sample][steps][classes]
  DeviceBuffer<int> step_spikes;                  // [sample][layers][steps]
  DeviceBuffer<double> step_ops;                  // [sample][steps]
  DeviceBuffer<int> done;                         // early stop: [sample], stopped in an earlier window
  DeviceBuffer<History> histories;                // per node (not per sample): where its history is
  // (and, when the run has several windows, `state` and `sums` above hold
  // each spiking node's registers between them: WindowState)
};

// Event-driven Conv2D and Dense layers with many input channels read their
// input's changes through per-cell lists (cell_changes_kernel); the others
// test each input's stamp directly.
bool uses_cell_lists(const Node& node) {
  return (node.kind == NodeKind::Dense || node.kind == NodeKind::Conv2D) && node.geom.in_c > kDirectChannels;
}

// Whether the layer-major kernels cover this network: a softmax only as the
// output (its history is read by no layer) with at most one block of classes.
bool layer_major_supported(const Network& net) {
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const Node& node = net.nodes[i];
    if (node.softmax && (i + 1 != net.nodes.size() || node.geom.out_c > 1024)) return false;
  }
  return true;
}

void launch_layer_integrate(NodeKind kind, bool softmax, dim3 grid, dim3 block, cudaStream_t stream,
                            const LayerMajorArgs& a) {
  switch (kind) {
    case NodeKind::Dense:
      if (softmax) launch("layer_softmax_kernel<Dense>", layer_softmax_kernel<NodeKind::Dense>, grid, block, stream, a);
      else launch("layer_integrate_kernel<Dense>", layer_integrate_kernel<NodeKind::Dense>, grid, block, stream, a);
      return;
    case NodeKind::Conv2D:
      if (softmax) launch("layer_softmax_kernel<Conv2D>", layer_softmax_kernel<NodeKind::Conv2D>, grid, block, stream, a);
      else launch("layer_integrate_kernel<Conv2D>", layer_integrate_kernel<NodeKind::Conv2D>, grid, block, stream, a);
      return;
    case NodeKind::DepthwiseConv2D:
      if (softmax) launch("layer_softmax_kernel<DepthwiseConv2D>", layer_softmax_kernel<NodeKind::DepthwiseConv2D>, grid, block, stream, a);
      else launch("layer_integrate_kernel<DepthwiseConv2D>", layer_integrate_kernel<NodeKind::DepthwiseConv2D>, grid, block, stream, a);
      return;
    case NodeKind::AveragePooling2D:  // never softmax (validate_node)
      launch("layer_integrate_kernel<AveragePooling2D>", layer_integrate_kernel<NodeKind::AveragePooling2D>, grid, block, stream, a);
      return;
    default:
      throw std::logic_error("launch_layer_integrate: not an integrating layer");
  }
}

void launch_integrate(NodeKind kind, bool softmax, dim3 grid, cudaStream_t stream, const LayerArgs& a) {
  const dim3 block(kBlock);
  switch (kind) {
    case NodeKind::Dense:
      if (softmax) launch("integrate_kernel<Dense, softmax>", integrate_kernel<NodeKind::Dense, true>, grid, block, stream, a);
      else launch("integrate_kernel<Dense>", integrate_kernel<NodeKind::Dense, false>, grid, block, stream, a);
      return;
    case NodeKind::Conv2D:
      if (softmax) launch("integrate_kernel<Conv2D, softmax>", integrate_kernel<NodeKind::Conv2D, true>, grid, block, stream, a);
      else launch("integrate_kernel<Conv2D>", integrate_kernel<NodeKind::Conv2D, false>, grid, block, stream, a);
      return;
    case NodeKind::DepthwiseConv2D:
      if (softmax) launch("integrate_kernel<DepthwiseConv2D, softmax>", integrate_kernel<NodeKind::DepthwiseConv2D, true>, grid, block, stream, a);
      else launch("integrate_kernel<DepthwiseConv2D>", integrate_kernel<NodeKind::DepthwiseConv2D, false>, grid, block, stream, a);
      return;
    case NodeKind::AveragePooling2D:  // never softmax (validate_node)
      launch("integrate_kernel<AveragePooling2D>", integrate_kernel<NodeKind::AveragePooling2D, false>, grid, block, stream, a);
      return;
    default:
      throw std::logic_error("launch_integrate: not an integrating layer");
  }
}

}  // namespace
}  // namespace cuda

using namespace cuda;

struct CudaEngine::Impl {
  const Network& net;
  int device = 0;
  StepParams params{};
  bool early_stop = false;
  bool record_spike_times = true;
  // Synaptic input: event-driven (the changes of each step, added to running
  // sums) unless TTFS_CUDA_SYNAPSES=gather asks for the full fan-in gather.
  bool events = true;
  // The time loop: step by step (one CUDA graph launch per step), or layer
  // by layer when TTFS_CUDA_SCHEDULE=layer asks for it and the network is
  // supported (layer_kernels.cuh: one launch per node, state in registers).
  bool layer_major = false;
  // Layer-major: steps per window (layer_kernels.cuh). One window for the
  // whole run where the per-block totals allow (kMaxWindowSteps); with early
  // stop, windows of a quarter of the run (at least kMinStopWindow steps), so
  // that a run ends once every sample has stopped. TTFS_CUDA_WINDOW=N sets it.
  int window_steps = 0;
  DeviceBuffer<int> running;  // layer-major early stop: samples of the chunk still running
  size_t memory_limit = 0;  // bytes a chunk's buffers may take (0: what is free)
  // TTFS_CUDA_PROFILE=1: the layer-major loop prints each launch's time (CUDA
  // events) to stderr, for tuning on a GPU.
  bool profile = false;
  // Layer-major: which buffers hold each node's history (-1: none, the softmax
  // output), and the elements of the largest node each slot holds.
  std::vector<int> history_slot, slot_elements;
  int steps = 0;
  int64_t in_size = 0, row = 0, classes = 0;
  int flag_row = 0, partial_stride = 0, layers = 0;
  std::vector<int> spiking;
  std::vector<DeviceNode> nodes;
  DeviceBuffer<int> layer_partial_offset, layer_partial_blocks;
  DeviceBuffer<Control> control;
  Stream stream;
  BatchBuffers batch;
  std::vector<std::pair<int64_t, GraphExec>> graphs;  // step graph per chunk size
  std::mutex mutex;

  Impl(const Network& network, const SimConfig& cfg) : net(network) {
    if (net.nodes.empty() || net.nodes[0].kind != NodeKind::Input)
      throw std::invalid_argument("CudaEngine: the network must start with its input node");
    TTFS_CUDA_CHECK(cudaGetDevice(&device));
    params = StepParams{cfg.dt, cfg.v_thresh, cfg.tau_refrac, cfg.step(cfg.steps).tau, cfg.leak ? 1 : 0,
                        cfg.steps, cfg.early_stop ? 1 : 0, cfg.seed};
    early_stop = cfg.early_stop;
    record_spike_times = cfg.record_spike_times;
    const char* synapses = std::getenv("TTFS_CUDA_SYNAPSES");
    events = !(synapses && std::string(synapses) == "gather");
    const char* schedule = std::getenv("TTFS_CUDA_SCHEDULE");
    const std::string requested = schedule ? schedule : "step";
    if (requested != "step" && requested != "layer")
      throw std::invalid_argument("TTFS_CUDA_SCHEDULE='" + requested + "': use 'step' or 'layer'");
    layer_major = requested == "layer" && layer_major_supported(net);
    window_steps = std::min(cfg.steps, kMaxWindowSteps);
    if (cfg.early_stop) window_steps = std::min(window_steps, std::max(kMinStopWindow, (cfg.steps + 3) / 4));
    if (const char* window = std::getenv("TTFS_CUDA_WINDOW"); window && *window) {
      char* end = nullptr;
      const long w = std::strtol(window, &end, 10);
      if (*end != '\0' || w < 1 || w > kMaxWindowSteps)
        throw std::invalid_argument("TTFS_CUDA_WINDOW='" + std::string(window) + "': use a number of steps from 1 to " +
                                    std::to_string(kMaxWindowSteps));
      window_steps = std::min(int(w), cfg.steps);
    }
    if (layer_major && early_stop) running = DeviceBuffer<int>(1);
    memory_limit = size_t(cfg.device_memory_limit);
    const char* profiling = std::getenv("TTFS_CUDA_PROFILE");
    profile = profiling && *profiling && std::string(profiling) != "0";
    steps = cfg.steps;
    spiking = net.spiking_nodes();
    layers = int(spiking.size());
    classes = net.num_classes();
    in_size = net.nodes[0].size;
    flag_row = 2 * int(net.nodes.size()) + 1;

    nodes.resize(net.nodes.size());
    std::vector<int> partial_offsets, partial_blocks;
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      DeviceNode& d = nodes[i];
      if (node.size >= std::numeric_limits<int>::max())
        throw std::invalid_argument("node '" + node.name + "': " + std::to_string(node.size) +
                                    " neurons; the CUDA backend supports fewer than 2^31 per layer");
      d.size = int(node.size);
      d.softmax = node.softmax;
      d.signal_offset = row;
      d.words = int((node.size + 31) / 32);
      row += node.size;
      if (node.integrates()) {
        d.state_fields = kIntegratingFields;
        d.kernel = DeviceBuffer<float>::from_host(node.kernel.data(), node.kernel.size());
        std::vector<float> bias_dt;  // b * dt, as the CPU engine computes it
        for (float b : node.bias) bias_dt.push_back(b * cfg.dt);
        d.bias_dt = DeviceBuffer<float>::from_host(bias_dt.data(), bias_dt.size());
        d.pool_count = DeviceBuffer<float>::from_host(node.pool_count.data(), node.pool_count.size());
      } else if (node.kind == NodeKind::MaxPooling2D) {
        d.state_fields = kMaxPoolFields;
      } else if (node.kind == NodeKind::Gather) {
        d.inbound = DeviceBuffer<int>::from_host(node.inbound.data(), node.inbound.size());
        std::vector<int64_t> source(node.size);
        for (int64_t e = 0; e < node.size; ++e) {
          const int slot = node.gather_input[e];
          source[e] = slot < 0 ? -1 : nodes[node.inbound[slot]].signal_offset + node.gather_element[e];
        }
        d.gather_source = DeviceBuffer<int64_t>::from_host(source.data(), source.size());
        std::vector<int> source_node(node.size), source_element(node.size);
        for (int64_t e = 0; e < node.size; ++e) {
          const int slot = node.gather_input[e];
          source_node[e] = slot < 0 ? -1 : node.inbound[slot];
          source_element[e] = slot < 0 ? 0 : int(node.gather_element[e]);
        }
        d.source_node = DeviceBuffer<int>::from_host(source_node.data(), source_node.size());
        d.source_element = DeviceBuffer<int>::from_host(source_element.data(), source_element.size());
      }
      if (node.is_spiking()) {
        d.slot = int(partial_offsets.size());
        d.fanout = DeviceBuffer<double>::from_host(node.fanout.data(), node.fanout.size());
        d.record_blocks = blocks_for(node.softmax ? node.size / node.geom.out_c : node.size, kBlock);
        d.partial_offset = partial_stride;
        partial_offsets.push_back(partial_stride);
        partial_blocks.push_back(d.record_blocks);
        partial_stride += d.record_blocks;
      }
    }
    layer_partial_offset = DeviceBuffer<int>::from_host(partial_offsets.data(), partial_offsets.size());
    layer_partial_blocks = DeviceBuffer<int>::from_host(partial_blocks.data(), partial_blocks.size());
    assign_history_slots();
    control = DeviceBuffer<Control>(1);
    cudaStream_t s = nullptr;
    TTFS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream.reset(s);
  }

  ~Impl() {
    // Free on the engine's device, after any work still in flight (errors
    // are ignored: nothing may throw here, e.g. at interpreter exit).
    cudaSetDevice(device);
    if (stream) cudaStreamSynchronize(stream.get());
  }

  // A node's history is needed until its last reader (the readout, for the
  // last node) has run; after that its buffers can hold a later node's. Each
  // node takes the largest free slot, or a new one; the last node always a
  // slot of its own: with early stop, a later window still writes the
  // samples that run on into a shared slot (a sample's region there depends
  // on the node's size), while the readout reads the stopped ones' output.
  void assign_history_slots() {
    const int n = int(net.nodes.size());
    std::vector<int> last_use(n, 0);
    for (int j = 0; j < n; ++j)
      for (int k : net.nodes[j].inbound) last_use[k] = std::max(last_use[k], j);
    last_use[n - 1] = n;
    history_slot.assign(n, -1);
    std::vector<int> occupant;  // per slot: the node whose history it holds now
    for (int i = 0; i < n; ++i) {
      if (net.nodes[i].softmax) continue;
      int slot = -1;
      for (int k = 0; k < int(occupant.size()) && i + 1 < n; ++k)
        if (last_use[occupant[k]] < i && (slot < 0 || slot_elements[k] > slot_elements[slot])) slot = k;
      if (slot < 0) {
        slot = int(occupant.size());
        occupant.push_back(i);
        slot_elements.push_back(0);
      }
      occupant[slot] = i;
      slot_elements[slot] = std::max(slot_elements[slot], nodes[i].size);
      history_slot[i] = slot;
    }
  }

  // ------------------------------------------------------------ memory
  // The single list of per-sample buffers: visit(buffer, elements per sample).
  template <typename Visit>
  void visit_batch_buffers(BatchBuffers& b, Visit&& visit) {
    const bool step_major = !layer_major;
    visit(b.x, in_size);
    visit(b.signal, step_major ? row : 0);
    visit(b.prospective, step_major ? row : 0);
    visit(b.stamp, step_major && events ? row : 0);
    visit(b.old_signal, step_major && events ? row : 0);
    visit(b.old_prospective, step_major && events ? row : 0);
    visit(b.flags, step_major ? flag_row : 0);
    for (auto* list : {&b.on_value, &b.p_value}) list->resize(slot_elements.size());
    b.on_step.resize(slot_elements.size());
    b.state.resize(nodes.size());
    for (auto* list : {&b.cell_count, &b.cell_list}) list->resize(nodes.size());
    b.sums.resize(nodes.size());
    const bool windowed = layer_major && window_steps < steps;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      const DeviceNode& d = nodes[i];
      const int window_fields = windowed && node.is_spiking() ? kWindowFields : 0;
      visit(b.state[i], int64_t(step_major ? d.state_fields : window_fields) * d.size);
      const bool event_driven = step_major && events && node.integrates();
      const bool window_sums = windowed && node.integrates();
      visit(b.sums[i], event_driven || window_sums ? 2 * int64_t(d.size) : 0);
      const bool lists = event_driven && uses_cell_lists(node);
      visit(b.cell_count[i], lists ? int64_t(node.geom.in_h) * node.geom.in_w : 0);
      visit(b.cell_list[i], lists ? node.geom.in_size() : 0);
    }
    b.planes.resize(slot_elements.size());
    for (size_t k = 0; k < slot_elements.size(); ++k) {
      const int64_t elements = layer_major ? slot_elements[k] : 0;
      visit(b.planes[k], int64_t(kPlanes) * steps * ((elements + 31) / 32));
      visit(b.on_step[k], elements);
      visit(b.on_value[k], elements);
      visit(b.p_value[k], elements);
    }
    b.first_spike.resize(spiking.size());
    for (size_t l = 0; l < spiking.size(); ++l)
      visit(b.first_spike[l], record_spike_times ? nodes[spiking[l]].size : 0);
    visit(b.partial_spikes, step_major ? partial_stride : 0);
    visit(b.partial_ops, step_major ? partial_stride : 0);
    visit(b.class_count, step_major ? classes : 0);
    visit(b.first_on, layer_major ? int64_t(nodes.size()) : 0);
    visit(b.changed, layer_major ? int64_t(nodes.size()) * steps : 0);
    visit(b.out_on, layer_major && nodes.back().softmax ? steps * classes : 0);
    visit(b.step_spikes, layer_major ? int64_t(layers) * steps : 0);
    visit(b.step_ops, layer_major ? steps : 0);
    visit(b.done, layer_major && early_stop ? 1 : 0);
    visit(b.spike_counts, layers);
    visit(b.synops, steps);
    visit(b.counts, classes * steps);
    visit(b.stop_step, 1);
  }

  // Device memory one sample of a chunk needs, and how many allocations a chunk makes.
  std::pair<size_t, size_t> per_sample_bytes() {
    BatchBuffers scratch;
    size_t bytes = 0, allocations = 0;
    visit_batch_buffers(scratch, [&](auto& buffer, int64_t per_sample) {
      using T = typename std::decay_t<decltype(buffer)>::value_type;
      bytes += size_t(per_sample) * sizeof(T);
      allocations += per_sample > 0;
    });
    return {bytes, allocations};
  }

  void allocate(int64_t capacity) {
    batch = BatchBuffers{};
    visit_batch_buffers(batch, [&](auto& buffer, int64_t per_sample) {
      using T = typename std::decay_t<decltype(buffer)>::value_type;
      buffer = DeviceBuffer<T>(size_t(per_sample) * size_t(capacity));
    });
    batch.capacity = capacity;
    if (layer_major) {
      std::vector<History> histories;
      for (size_t i = 0; i < nodes.size(); ++i) histories.push_back(history(i));
      batch.histories = DeviceBuffer<History>::from_host(histories.data(), histories.size());
    }
  }

  // Node i's output history in the chunk buffers (layer-major).
  History history(size_t i) {
    const DeviceNode& d = nodes[i];
    const int k = history_slot[i];  // -1: the softmax output keeps none
    auto in_slot = [k](auto& buffers) { return k < 0 ? nullptr : buffers[k].data(); };
    return History{in_slot(batch.planes), in_slot(batch.on_step), in_slot(batch.on_value),
                   in_slot(batch.p_value), batch.first_on.data() + i, int(nodes.size()),
                   batch.changed.data() + int64_t(i) * batch.capacity * steps, d.size, d.words, steps};
  }

  // Makes room for up to `samples` samples at once (reusing the buffers when
  // they are large enough) and returns the chunk size that runs will use.
  int64_t ensure_capacity(int64_t samples) {
    const int64_t wanted = std::min(samples, kMaxChunk);
    if (batch.capacity >= wanted) return wanted;
    graphs.clear();          // they point into the old buffers
    batch = BatchBuffers{};  // free them before measuring what is free
    const auto [per_sample, allocations] = per_sample_bytes();
    size_t free_bytes = 0, total_bytes = 0;
    TTFS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    // Headroom for the graphs, the allocator's 2 MiB granularity and other users.
    const size_t reserve = (size_t(64) << 20) + free_bytes / 16 + allocations * (size_t(2) << 20);
    size_t usable = free_bytes > reserve ? free_bytes - reserve : 0;
    if (memory_limit > 0) usable = std::min<size_t>(usable, memory_limit);
    int64_t capacity = std::min<int64_t>(wanted, int64_t(usable / std::max<size_t>(per_sample, 1)));
    if (capacity < 1)
      throw std::runtime_error(
          "CUDA backend: one sample needs " + human_bytes(per_sample) + " of device memory (state of " +
          std::to_string(row) + " neuron outputs in " + std::to_string(nodes.size()) +
          " nodes, results of " + std::to_string(steps) + " steps x " + std::to_string(classes) +
          " classes), but only " + human_bytes(usable) + " of the device's " + human_bytes(free_bytes) + " free (" +
          human_bytes(total_bytes) + " total) are usable" +
          (memory_limit > 0 ? " within cuda_memory_limit=" + std::to_string(memory_limit) : std::string()) +
          "; use fewer steps, a smaller network or the CPU backend");
    for (;;) {
      try {
        allocate(capacity);
        return capacity;
      } catch (const CudaError& e) {
        // The estimate was optimistic (fragmentation, another process): halve.
        batch = BatchBuffers{};
        if (e.code() != cudaErrorMemoryAllocation || capacity == 1) throw;
        cudaGetLastError();
        capacity /= 2;
      }
    }
  }

  // ------------------------------------------------------------ one step
  SampleView sample_view() {
    return SampleView{batch.signal.data(), batch.prospective.data(), batch.stamp.data(),
                      batch.old_signal.data(), batch.old_prospective.data(), row, batch.flags.data(),
                      int(nodes.size()), flag_row, control.data()};
  }

  Recorder recorder(const DeviceNode& d) {
    return Recorder{batch.first_spike[d.slot].data(), d.fanout.data(), batch.partial_spikes.data(),
                    batch.partial_ops.data(), d.partial_offset, partial_stride};
  }

  LayerArgs layer_args(size_t i) {
    const Node& node = net.nodes[i];
    const DeviceNode& d = nodes[i];
    LayerArgs a{};
    a.g = make_window(node.geom);
    a.size = d.size;
    a.node = int(i);
    a.inbound = node.inbound[0];
    a.in_offset = nodes[node.inbound[0]].signal_offset;
    a.out_offset = d.signal_offset;
    a.kernel = d.kernel.data();
    a.bias_dt = d.bias_dt.data();  // null without bias
    a.pool_count = d.pool_count.data();
    a.state = batch.state[i].data();
    a.field_stride = batch.capacity * d.size;
    a.sums = batch.sums[i].data();  // null unless event-driven
    a.cell_count = batch.cell_count[i].data();
    a.cell_list = batch.cell_list[i].data();
    a.v = sample_view();
    a.r = recorder(d);
    a.p = params;
    return a;
  }

  // The kernels of one time step for `n` samples, in node order.
  void enqueue_step(int64_t n) {
    cudaStream_t st = stream.get();
    const SampleView v = sample_view();
    for (size_t i = 1; i < nodes.size(); ++i) {
      const Node& node = net.nodes[i];
      const DeviceNode& d = nodes[i];
      const dim3 grid(blocks_for(d.size, kBlock), unsigned(n));
      if (node.kind == NodeKind::Gather) {
        const GatherArgs a{d.size, int(i), d.inbound.data(), int(d.inbound.size()),
                           d.gather_source.data(), d.signal_offset, v};
        launch("gather_kernel", gather_kernel, grid, dim3(kBlock), st, a);
      } else if (node.kind == NodeKind::MaxPooling2D) {
        launch("maxpool_kernel", maxpool_kernel, grid, dim3(kBlock), st, layer_args(i));
      } else {
        const LayerArgs a = layer_args(i);
        if (a.cell_count) {  // event-driven, many channels: this step's changes per input cell
          const int cells = node.geom.in_h * node.geom.in_w;
          const CellChangesArgs c{cells, node.geom.in_c, a.inbound, a.in_offset,
                                  batch.cell_count[i].data(), batch.cell_list[i].data(), v};
          const int threads = std::min(kCellBlock, (node.geom.in_c + 31) / 32 * 32);
          launch("cell_changes_kernel", cell_changes_kernel, dim3(unsigned(cells), unsigned(n)),
                 dim3(unsigned(threads)), st, c);
        }
        launch_integrate(node.kind, d.softmax, grid, st, a);
        if (d.softmax) {
          const int per_position = node.geom.out_c;
          const SoftmaxArgs sa{d.size / per_position, per_position, d.size, int(i), d.signal_offset,
                               a.state + kMembrane * a.field_stride, v, recorder(d), params};
          launch("softmax_kernel", softmax_kernel, dim3(d.record_blocks, unsigned(n)), dim3(kBlock), st, sa);
        }
      }
    }
    const ReadoutArgs r{v,
                        params,
                        nodes.back().signal_offset,
                        int(classes),
                        layers,
                        layer_partial_offset.data(),
                        layer_partial_blocks.data(),
                        batch.partial_spikes.data(),
                        batch.partial_ops.data(),
                        partial_stride,
                        batch.spike_counts.data(),
                        batch.synops.data(),
                        batch.class_count.data(),
                        batch.counts.data(),
                        batch.stop_step.data()};
    launch("readout_kernel", readout_kernel, dim3(unsigned(n)), dim3(kReadoutBlock), st, r);
    launch("advance_step_kernel", advance_step_kernel, dim3(1), dim3(1), st, control.data());
  }

  // One step as a CUDA graph, so that a step costs one launch.
  GraphExec capture_step(int64_t n) {
    cudaStream_t st = stream.get();
    TTFS_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_step(n);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(st, &broken);
      if (broken) cudaGraphDestroy(broken);
      cudaGetLastError();
      throw;
    }
    cudaGraph_t raw = nullptr;
    TTFS_CUDA_CHECK(cudaStreamEndCapture(st, &raw));
    const Graph graph(raw);
    cudaGraphExec_t exec = nullptr;
    TTFS_CUDA_CHECK(cudaGraphInstantiate(&exec, graph.get(), 0));
    return GraphExec(exec);
  }

  cudaGraphExec_t step_graph(int64_t n) {
    for (auto& cached : graphs)
      if (cached.first == n) return cached.second.get();
    if (int(graphs.size()) >= kMaxCachedGraphs) graphs.erase(graphs.begin());
    graphs.emplace_back(n, capture_step(n));
    return graphs.back().second.get();
  }

  template <typename T>
  void copy_out(T* to, const DeviceBuffer<T>& device, int64_t count, bool to_device = false) {
    if (count > 0)
      TTFS_CUDA_CHECK(cudaMemcpyAsync(to, device.data(), size_t(count) * sizeof(T),
                                      to_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost,
                                      stream.get()));
  }

  // ------------------------------------------------------------ one chunk
  // x: host memory, or device memory read in place if x_on_device.
  void run_chunk(const float* x, bool x_on_device, int64_t n, int64_t sample_offset, const ResultViews& out,
                 int64_t row0) {
    if (layer_major) return run_chunk_layer_major(x, x_on_device, n, sample_offset, out, row0);
    cudaStream_t st = stream.get();
    const cudaGraphExec_t step = step_graph(n);
    TTFS_CUDA_CHECK(cudaMemsetAsync(batch.flags.data(), 0, size_t(n) * flag_row * sizeof(int), st));
    if (!x_on_device) {
      TTFS_CUDA_CHECK(cudaMemcpyAsync(batch.x.data(), x, size_t(n) * in_size * sizeof(float),
                                      cudaMemcpyHostToDevice, st));
      x = batch.x.data();
    }
    const Control start{1, int(n), sample_offset};
    TTFS_CUDA_CHECK(cudaMemcpyAsync(control.data(), &start, sizeof start, cudaMemcpyHostToDevice, st));
    launch("input_kernel", input_kernel, dim3(blocks_for(in_size, kBlock), unsigned(n)), dim3(kBlock), st,
           x, in_size, params.dt, sample_view());
    for (int t = 1; t <= steps; ++t) {
      TTFS_CUDA_CHECK(cudaGraphLaunch(step, st));
      if (early_stop && t < steps && t % kEarlyStopPoll == 0) {
        int running = 0;
        TTFS_CUDA_CHECK(cudaMemcpyAsync(&running, &control.data()->running, sizeof running,
                                        cudaMemcpyDeviceToHost, st));
        TTFS_CUDA_CHECK(cudaStreamSynchronize(st));
        if (running == 0) break;  // every sample stopped and filled its results
      }
    }
    copy_results(n, out, row0);
  }

  // The results of a chunk's n samples, to rows row0.. of `out`; returns when done.
  void copy_results(int64_t n, const ResultViews& out, int64_t row0) {
    copy_out(out.counts + row0 * classes * steps, batch.counts, n * classes * steps);
    for (size_t l = 0; l < out.first_spike.size(); ++l) {
      const int64_t size = nodes[spiking[l]].size;
      copy_out(out.first_spike[l] + row0 * size, batch.first_spike[l], n * size, out.first_spike_on_device);
    }
    copy_out(out.spike_counts + row0 * layers, batch.spike_counts, n * layers);
    copy_out(out.synops + row0 * steps, batch.synops, n * steps);
    copy_out(out.stop_step + row0, batch.stop_step, n);
    TTFS_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }

  // ------------------------------------------------------------ layer-major chunk
  LayerMajorArgs layer_major_args(size_t i, int64_t sample_offset, StepWindow w) {
    const Node& node = net.nodes[i];
    const DeviceNode& d = nodes[i];
    LayerMajorArgs a{};
    a.g = make_window(node.geom);
    a.size = d.size;
    a.kernel = d.kernel.data();
    a.bias_dt = d.bias_dt.data();  // null without bias
    a.pool_count = d.pool_count.data();
    a.in = history(node.inbound[0]);
    a.out = history(i);
    a.r = LayerRecords{batch.first_spike[d.slot].data(), d.fanout.data(),
                       batch.step_spikes.data() + int64_t(d.slot) * steps, int64_t(layers) * steps,
                       batch.step_ops.data()};
    a.p = params;
    a.sample_offset = sample_offset;
    a.out_on = batch.out_on.data();
    a.warp_chunks = warp_scan_chunks(node);
    a.w = w;
    a.state = WindowState{batch.sums[i].data(), batch.state[i].data(), batch.capacity * d.size};
    a.done = batch.done.data();  // null without early stop
    return a;
  }

  // Per window of steps, one launch per node (each running the window's
  // steps), then with early stop a check of which samples stopped; after the
  // last window (or once every sample stopped), the readout.
  void run_chunk_layer_major(const float* x, bool x_on_device, int64_t n, int64_t sample_offset,
                             const ResultViews& out, int64_t row0) {
    cudaStream_t st = stream.get();
    const unsigned samples = unsigned(n);
    TTFS_CUDA_CHECK(cudaMemsetAsync(batch.first_on.data(), 0x7f, size_t(n) * nodes.size() * sizeof(int), st));
    TTFS_CUDA_CHECK(cudaMemsetAsync(batch.changed.data(), 0, batch.changed.size() * sizeof(int), st));
    TTFS_CUDA_CHECK(cudaMemsetAsync(batch.step_spikes.data(), 0, size_t(n) * layers * steps * sizeof(int), st));
    TTFS_CUDA_CHECK(cudaMemsetAsync(batch.step_ops.data(), 0, size_t(n) * steps * sizeof(double), st));
    if (early_stop) {
      TTFS_CUDA_CHECK(cudaMemsetAsync(batch.done.data(), 0, size_t(n) * sizeof(int), st));
      const int all = int(n);
      TTFS_CUDA_CHECK(cudaMemcpyAsync(running.data(), &all, sizeof all, cudaMemcpyHostToDevice, st));
    }
    if (!x_on_device) {
      TTFS_CUDA_CHECK(cudaMemcpyAsync(batch.x.data(), x, size_t(n) * in_size * sizeof(float),
                                      cudaMemcpyHostToDevice, st));
      x = batch.x.data();
    }
    std::vector<std::pair<std::string, Event>> marks;  // TTFS_CUDA_PROFILE: an event after each launch
    auto mark = [&](std::string what) {
      if (!profile) return;
      cudaEvent_t e = nullptr;
      TTFS_CUDA_CHECK(cudaEventCreate(&e));
      marks.emplace_back(std::move(what), Event(e));
      TTFS_CUDA_CHECK(cudaEventRecord(e, st));
    };
    mark("start");
    for (int first = 1; first <= steps; first += window_steps) {
      const StepWindow w{first, std::min(steps, first + window_steps - 1)};
      const std::string in_window =
          window_steps < steps ? ", steps " + std::to_string(w.first) + "-" + std::to_string(w.last) : "";
      launch("layer_input_kernel", layer_input_kernel, dim3(blocks_for(in_size, kBlock), samples), dim3(kBlock),
             st, x, in_size, params.dt, history(0), w, batch.done.data());
      mark(net.nodes[0].name + " (input" + in_window + ")");
      for (size_t i = 1; i < nodes.size(); ++i) {
        const Node& node = net.nodes[i];
        const DeviceNode& d = nodes[i];
        const dim3 grid(blocks_for(d.size, kBlock), samples);
        if (node.kind == NodeKind::Gather) {
          const LayerGatherArgs a{batch.histories.data(), d.source_node.data(), d.source_element.data(),
                                  history(i), w, batch.done.data()};
          launch("layer_gather_kernel", layer_gather_kernel, grid, dim3(kBlock), st, a);
        } else if (node.kind == NodeKind::MaxPooling2D) {
          launch("layer_maxpool_kernel", layer_maxpool_kernel, grid, dim3(kBlock), st,
                 layer_major_args(i, sample_offset, w));
        } else if (d.softmax) {  // a block per (position, sample), a thread per class
          const int classes_here = node.geom.out_c;
          launch_layer_integrate(node.kind, true, dim3(unsigned(d.size / classes_here), samples),
                                 dim3(unsigned((classes_here + 31) / 32 * 32)), st,
                                 layer_major_args(i, sample_offset, w));
        } else {
          launch_layer_integrate(node.kind, false, grid, dim3(kBlock), st, layer_major_args(i, sample_offset, w));
        }
        mark(node.name + " (" + std::to_string(d.size) + " elements" + in_window + ")");
      }
      if (early_stop) {
        const LayerStopArgs a{history(nodes.size() - 1), int(classes), w, int(n), batch.done.data(),
                              batch.stop_step.data(), running.data()};
        launch("layer_stop_kernel", layer_stop_kernel, dim3(blocks_for(n, kReadoutBlock)), dim3(kReadoutBlock), st, a);
        if (w.last < steps) {  // another window: only if a sample still runs
          int still_running = 0;
          TTFS_CUDA_CHECK(cudaMemcpyAsync(&still_running, running.data(), sizeof still_running,
                                          cudaMemcpyDeviceToHost, st));
          TTFS_CUDA_CHECK(cudaStreamSynchronize(st));
          if (still_running == 0) break;
        }
        mark("stop check" + in_window);
      }
    }
    const LayerReadoutArgs r{history(nodes.size() - 1), nodes.back().softmax ? batch.out_on.data() : nullptr,
                             int(classes), steps, layers, batch.done.data(), batch.step_spikes.data(),
                             batch.step_ops.data(), batch.spike_counts.data(), batch.synops.data(),
                             batch.counts.data(), batch.stop_step.data()};
    launch("layer_readout_kernel", layer_readout_kernel, dim3(samples), dim3(kReadoutBlock), st, r);
    if (early_stop && record_spike_times)
      for (int l = 0; l < layers; ++l) {
        const int size = nodes[spiking[l]].size;
        launch("drop_spikes_after_stop_kernel", drop_spikes_after_stop_kernel,
               dim3(blocks_for(size, kBlock), samples), dim3(kBlock), st, batch.first_spike[l].data(), size,
               batch.stop_step.data(), params);
      }
    mark("readout");
    copy_results(n, out, row0);
    if (profile) {
      std::fprintf(stderr, "TTFS_CUDA_PROFILE layer-major, %lld samples, %d steps:\n", (long long)n, steps);
      for (size_t m = 1; m < marks.size(); ++m) {
        float ms = 0.0f;
        TTFS_CUDA_CHECK(cudaEventElapsedTime(&ms, marks[m - 1].second.get(), marks[m].second.get()));
        std::fprintf(stderr, "  %9.3f ms  %s\n", double(ms), marks[m].first.c_str());
      }
    }
  }
};

CudaEngine::CudaEngine(const Network& net, const SimConfig& config)
    : net_(net), config_(config), impl_(std::make_unique<Impl>(net_, config_)) {}

CudaEngine::~CudaEngine() = default;

void CudaEngine::run(const float* x, int64_t samples, int64_t sample_offset, const ResultViews& out,
                     int /*num_threads_ignored*/, bool x_on_device) const {
  if (samples <= 0) return;
  if (out.first_spike.size() != (config_.record_spike_times ? impl_->spiking.size() : 0))
    throw std::invalid_argument(config_.record_spike_times
                                    ? "CudaEngine::run: one first-spike array per spiking layer"
                                    : "CudaEngine::run: this engine does not record first-spike times");
  Impl& m = *impl_;
  const std::lock_guard<std::mutex> lock(m.mutex);
  const DeviceScope scope(m.device);
  const int64_t chunk = m.ensure_capacity(samples);
  for (int64_t start = 0; start < samples; start += chunk) {
    const int64_t n = std::min(chunk, samples - start);
    m.run_chunk(x + start * m.in_size, x_on_device, n, sample_offset + start, out, start);
  }
}

int CudaEngine::device() const { return impl_->device; }

const char* CudaEngine::schedule() const { return impl_->layer_major ? "layer" : "step"; }

int CudaEngine::window_steps() const { return impl_->layer_major ? impl_->window_steps : 0; }

size_t CudaEngine::bytes_per_sample() const { return impl_->per_sample_bytes().first; }

int64_t CudaEngine::chunk_capacity() const {
  const std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->batch.capacity;
}

uintptr_t CudaEngine::stream_handle() const { return reinterpret_cast<uintptr_t>(impl_->stream.get()); }

bool CudaEngine::all_finite(const float* x, int64_t count) const {
  if (count <= 0) return true;
  Impl& m = *impl_;
  const std::lock_guard<std::mutex> lock(m.mutex);
  const DeviceScope scope(m.device);
  cudaStream_t st = m.stream.get();
  DeviceBuffer<int> found(1);
  TTFS_CUDA_CHECK(cudaMemsetAsync(found.data(), 0, sizeof(int), st));
  const int blocks = int(std::min<int64_t>(blocks_for(count, kBlock), 4096));
  launch("nonfinite_kernel", nonfinite_kernel, dim3(blocks), dim3(kBlock), st, x, count, found.data());
  int host = 0;
  TTFS_CUDA_CHECK(cudaMemcpyAsync(&host, found.data(), sizeof host, cudaMemcpyDeviceToHost, st));
  TTFS_CUDA_CHECK(cudaStreamSynchronize(st));
  return host == 0;
}

DeviceMemory::DeviceMemory(size_t bytes, int device) : bytes_(bytes), device_(device) {
  const DeviceScope scope(device);
  if (bytes > 0) TTFS_CUDA_CHECK(cudaMalloc(&data_, bytes));
}

DeviceMemory::~DeviceMemory() {
  if (!data_) return;
  int previous = 0;  // (errors ignored: destructors must not throw)
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  cudaFree(data_);
  cudaSetDevice(previous);
}

void DeviceMemory::copy_from_host(const void* host, size_t bytes) {
  if (bytes > bytes_) throw std::invalid_argument("DeviceMemory: copy larger than the allocation");
  const DeviceScope scope(device_);
  if (bytes > 0) TTFS_CUDA_CHECK(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice));
}

void DeviceMemory::copy_to_host(void* host, size_t bytes) const {
  if (bytes > bytes_) throw std::invalid_argument("DeviceMemory: copy larger than the allocation");
  const DeviceScope scope(device_);
  if (bytes > 0) TTFS_CUDA_CHECK(cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost));
}

int cuda_current_device() {
  int device = 0;
  TTFS_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

std::pair<bool, std::string> cuda_device_status() {
  try {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      cudaGetLastError();
      int driver = 0;
      cudaDriverGetVersion(&driver);  // 0 when no driver is installed
      const std::string runtime =
          std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
      const std::string cause =
          driver == 0 ? "no NVIDIA driver is installed"
                      : "NVIDIA driver for CUDA " + std::to_string(driver / 1000) + "." +
                            std::to_string(driver % 1000 / 10) + ", this build needs " + runtime + " or newer";
      return {false, std::string("no usable CUDA device: ") + cudaGetErrorString(status) + " (" +
                         cudaGetErrorName(status) + " from cudaGetDeviceCount; " + cause + ")"};
    }
    if (count == 0) return {false, "no CUDA device found"};
    int device = 0;
    TTFS_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    TTFS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    const std::string arch = "sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
    // Is there machine code (or PTX) in this build that the device can run?
    cudaFuncAttributes attributes{};
    status = cudaFuncGetAttributes(&attributes, readout_kernel);
    if (status != cudaSuccess) {
      cudaGetLastError();
      std::string built = "?";
#ifdef TTFS_CUDA_ARCHS
      built = TTFS_CUDA_ARCHS;
#endif
      return {false, std::string(prop.name) + " (" + arch + ") cannot run this build's kernels (built for " +
                         built + "): " + cudaGetErrorString(status)};
    }
    int driver = 0;
    cudaDriverGetVersion(&driver);
    char memory[32];
    std::snprintf(memory, sizeof memory, "%.1f GiB", double(prop.totalGlobalMem) / double(1ull << 30));
    return {true, std::string(prop.name) + " (device " + std::to_string(device) + " of " +
                      std::to_string(count) + ", " + arch + ", " + memory + ", driver CUDA " +
                      std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) + ")"};
  } catch (const std::exception& e) {
    cudaGetLastError();
    return {false, e.what()};
  } catch (...) {
    return {false, "unknown error while querying CUDA devices"};
  }
}

}  // namespace ttfs
