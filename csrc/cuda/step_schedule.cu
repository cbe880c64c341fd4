// The step loop (the default schedule): per chunk, clear the per-sample
// flags, start the input, then replay one captured CUDA graph per time step
// (one kernel per node, the readout, and a kernel that advances the
// device-side step counter; step_kernels.cuh). Synaptic input is
// event-driven: every output element that changes is stamped with the step
// and its old values, and a layer adds only the stamped inputs of its
// fan-in to running double sums (Conv2D and Dense layers with more than 32
// input channels find them through per-cell lists of changed channels,
// cell_changes_kernel). cuda_synapses = Gather instead re-gathers the whole
// fan-in whenever the inbound node changed (the first design, kept for
// comparison; synapse_gather.cuh).
// The ttfs-window coding has a step loop of its own (run_chunk_window, at the
// end: window_kernels.cuh), run up to the read step R_out.
#include <algorithm>
#include <stdexcept>

#include "engine_impl.cuh"
#include "step_kernels.cuh"
#include "window_kernels.cuh"

namespace ttfs {

namespace cuda {
namespace {

constexpr int kEarlyStopPoll = 8;  // steps between checks whether every sample stopped

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
    case NodeKind::Add:  // never softmax (validate_node)
      launch("integrate_kernel<Add>", integrate_kernel<NodeKind::Add, false>, grid, block, stream, a);
      return;
    default:
      throw std::logic_error("launch_integrate: not an integrating layer");
  }
}

// An open node: one synapse group of the Add after it (add_group_kernel).
void launch_group(NodeKind kind, dim3 grid, cudaStream_t stream, const LayerArgs& a) {
  const dim3 block(kBlock);
  switch (kind) {
    case NodeKind::Dense:
      launch("add_group_kernel<Dense>", add_group_kernel<NodeKind::Dense>, grid, block, stream, a);
      return;
    case NodeKind::Conv2D:
      launch("add_group_kernel<Conv2D>", add_group_kernel<NodeKind::Conv2D>, grid, block, stream, a);
      return;
    case NodeKind::DepthwiseConv2D:
      launch("add_group_kernel<DepthwiseConv2D>", add_group_kernel<NodeKind::DepthwiseConv2D>, grid, block,
             stream, a);
      return;
    default:
      throw std::logic_error("launch_group: not a weighted node");
  }
}

SampleView sample_view(CudaEngine::Impl& m) {
  return SampleView{m.batch.signal.data(), m.batch.prospective.data(), m.batch.stamp.data(),
                    m.batch.old_signal.data(), m.batch.old_prospective.data(), m.row, m.batch.flags.data(),
                    int(m.nodes.size()), m.flag_row, m.control.data()};
}

Recorder recorder(CudaEngine::Impl& m, const DeviceNode& d) {
  return Recorder{m.batch.first_spike[d.slot].data(), d.fanout.data(), m.batch.partial_spikes.data(),
                  m.batch.partial_ops.data(), d.partial_offset, m.partial_stride};
}

LayerArgs layer_args(CudaEngine::Impl& m, size_t i, int merge_target = -1) {
  const Node& node = m.net.nodes[i];
  const DeviceNode& d = m.nodes[i];
  LayerArgs a{};
  a.g = node.geom;
  a.size = d.size;
  a.node = int(i);
  a.inbound = node.inbound[0];
  a.in_offset = m.nodes[node.inbound[0]].signal_offset;
  a.out_offset = d.signal_offset;
  a.kernel = d.kernel.data();
  a.bias_dt = d.bias_dt.data();  // null without bias
  a.pool_count = d.pool_count.data();
  a.state = m.batch.state[i].data();
  a.field_stride = m.batch.capacity * d.size;
  a.sums = m.batch.sums[i].data();  // null unless event-driven
  if (node.open) {  // a synapse group: into its Add's sums
    a.sums = m.batch.sums[merge_target].data();
    a.first_group = m.net.nodes[merge_target].inbound[0] == int(i);
  }
  if (node.kind == NodeKind::Add) {
    a.groups = d.inbound.data();
    a.group_count = int(node.inbound.size());
  }
  a.cell_count = m.batch.cell_count[i].data();
  a.cell_list = m.batch.cell_list[i].data();
  a.v = sample_view(m);
  a.r = recorder(m, d);
  a.p = m.params;
  return a;
}

// The kernels of one time step for `n` samples, in node order.
void enqueue_step(CudaEngine::Impl& m, int64_t n) {
  cudaStream_t st = m.stream.get();
  const SampleView v = sample_view(m);
  const std::vector<int> merge_target = m.net.merge_targets();
  for (size_t i = 1; i < m.nodes.size(); ++i) {
    const Node& node = m.net.nodes[i];
    const DeviceNode& d = m.nodes[i];
    const dim3 grid(blocks_for(d.size, kBlock), unsigned(n));
    if (node.kind == NodeKind::Gather) {
      const GatherArgs a{d.size, int(i), d.inbound.data(), int(d.inbound.size()),
                         d.gather_source.data(), d.signal_offset, v};
      launch("gather_kernel", gather_kernel, grid, dim3(kBlock), st, a);
    } else if (node.kind == NodeKind::MaxPooling2D) {
      launch("maxpool_kernel", maxpool_kernel, grid, dim3(kBlock), st, layer_args(m, i));
    } else if (node.open && merge_target[i] < 0) {
      continue;  // (read by no Add: nothing to do)
    } else {
      const LayerArgs a = layer_args(m, i, merge_target[i]);
      if (a.cell_count) {  // event-driven, many channels: this step's changes per input cell
        const int cells = node.geom.in_h * node.geom.in_w;
        const CellChangesArgs c{cells, node.geom.in_c, a.inbound, a.in_offset,
                                m.batch.cell_count[i].data(), m.batch.cell_list[i].data(), v};
        const int threads = std::min(kCellBlock, (node.geom.in_c + 31) / 32 * 32);
        launch("cell_changes_kernel", cell_changes_kernel, dim3(unsigned(cells), unsigned(n)),
               dim3(unsigned(threads)), st, c);
      }
      if (node.open) {
        launch_group(node.kind, grid, st, a);
        continue;
      }
      launch_integrate(node.kind, d.softmax, grid, st, a);
      if (d.softmax) {
        const int per_position = node.geom.out_c;
        const SoftmaxArgs sa{d.size / per_position, per_position, d.size, int(i), d.signal_offset,
                             a.state + kMembrane * a.field_stride, v, recorder(m, d), m.params};
        launch("softmax_kernel", softmax_kernel, dim3(d.record_blocks, unsigned(n)), dim3(kBlock), st, sa);
      }
    }
  }
  const ReadoutArgs r{v,
                      m.params,
                      m.nodes.back().signal_offset,
                      int(m.classes),
                      m.layers,
                      m.layer_partial_offset.data(),
                      m.layer_partial_blocks.data(),
                      m.batch.partial_spikes.data(),
                      m.batch.partial_ops.data(),
                      m.partial_stride,
                      m.batch.spike_counts.data(),
                      m.batch.synops.data(),
                      m.batch.class_count.data(),
                      m.batch.counts.data(),
                      m.batch.stop_step.data()};
  launch("readout_kernel", readout_kernel, dim3(unsigned(n)), dim3(kReadoutBlock), st, r);
  launch("advance_step_kernel", advance_step_kernel, dim3(1), dim3(1), st, m.control.data());
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaEngine::Impl::run_chunk_step(const float* x, int64_t n, int64_t sample_offset) {
  cudaStream_t st = stream.get();
  const cudaGraphExec_t step = graphs.get(n, st, [&] { enqueue_step(*this, n); });
  TTFS_CUDA_CHECK(cudaMemsetAsync(batch.flags.data(), 0, size_t(n) * flag_row * sizeof(int), st));
  const Control start{1, int(n), sample_offset};
  TTFS_CUDA_CHECK(cudaMemcpyAsync(control.data(), &start, sizeof start, cudaMemcpyHostToDevice, st));
  launch("input_kernel", input_kernel, dim3(blocks_for(in_size, kBlock), unsigned(n)), dim3(kBlock), st, x,
         in_size, params.dt, sample_view(*this));
  for (int t = 1; t <= steps; ++t) {
    TTFS_CUDA_CHECK(cudaGraphLaunch(step, st));
    if (early_stop && t < steps && t % kEarlyStopPoll == 0) {
      int still_running = 0;
      TTFS_CUDA_CHECK(cudaMemcpyAsync(&still_running, &control.data()->running, sizeof still_running,
                                      cudaMemcpyDeviceToHost, st));
      TTFS_CUDA_CHECK(cudaStreamSynchronize(st));
      if (still_running == 0) break;  // every sample stopped and filled its results
    }
  }
}

// ------------------------------------------------------- the window coding

namespace cuda {
namespace {

FiredView fired_view(CudaEngine::Impl& m) {
  return FiredView{m.batch.fired.data(), m.batch.fired_off.data(), m.row, m.control.data()};
}

// The kernels of one step of the window coding for `n` samples, in node order.
void enqueue_window_step(CudaEngine::Impl& m, int64_t n) {
  cudaStream_t st = m.stream.get();
  const FiredView f = fired_view(m);
  const DeviceNode& input = m.nodes[0];
  const Recorder input_rec{nullptr, input.fanout.data(), m.batch.partial_spikes.data(), m.batch.partial_ops.data(),
                           m.input_partial_offset, m.partial_stride};
  launch("window_input_record_kernel", window_input_record_kernel,
         dim3(blocks_for(m.in_size, kBlock), unsigned(n)), dim3(kBlock), st, m.in_size,
         m.window_config.input_ref(), f, input_rec);
  const std::vector<int> merge_target = m.net.merge_targets();
  for (size_t i = 1; i < m.nodes.size(); ++i) {
    const Node& node = m.net.nodes[i];
    const DeviceNode& d = m.nodes[i];
    const dim3 grid(blocks_for(d.size, kBlock), unsigned(n));
    if (node.kind == NodeKind::Gather) {
      const WindowGatherArgs a{d.size, d.gather_source.data(), d.gather_delay.data(), d.signal_offset, f};
      launch("window_gather_kernel", window_gather_kernel, grid, dim3(kBlock), st, a);
      continue;
    }
    WindowLayerArgs a{};
    if (node.open) {  // a synapse group: into its Add's sums, up to the Add's window
      const int add = merge_target[i];
      a.g = node.geom;
      a.size = d.size;
      a.start = m.nodes[size_t(add)].window_start;
      a.in_offset = m.nodes[node.inbound[0]].signal_offset;
      a.kernel = d.kernel.data();
      a.f = f;
      a.sums = m.batch.sums[size_t(add)].data();
      a.delay = d.window_delay;
      a.first_group = m.net.nodes[size_t(add)].inbound[0] == int(i);
      switch (node.kind) {
        case NodeKind::Dense: launch("window_group_kernel<Dense>", window_group_kernel<NodeKind::Dense>, grid, dim3(kBlock), st, a); break;
        case NodeKind::Conv2D: launch("window_group_kernel<Conv2D>", window_group_kernel<NodeKind::Conv2D>, grid, dim3(kBlock), st, a); break;
        case NodeKind::DepthwiseConv2D:
          launch("window_group_kernel<DepthwiseConv2D>", window_group_kernel<NodeKind::DepthwiseConv2D>, grid, dim3(kBlock), st, a);
          break;
        default:
          throw std::logic_error("enqueue_window_step: a synapse group must be a weighted node");
      }
      continue;
    }
    a.g = node.geom;
    a.size = d.size;
    a.start = d.window_start;
    a.ref = d.window_ref;
    a.output = i + 1 == m.nodes.size();
    a.zero_spikes = m.window_config.zero_spikes;
    a.dt = m.params.dt;
    a.in_offset = m.nodes[node.inbound[0]].signal_offset;
    a.out_offset = d.signal_offset;
    a.kernel = d.kernel.data();
    a.bias = d.window_bias.data();  // null without a bias
    a.theta = d.theta.data();
    a.weight = d.window_weight.data();
    a.state = m.batch.state[i].data();
    a.field_stride = m.batch.capacity * d.size;
    a.y = m.batch.output_membrane.data();
    a.f = f;
    a.r = recorder(m, d);
    a.sums = node.kind == NodeKind::Add ? m.batch.sums[i].data() : nullptr;
    switch (node.kind) {
      case NodeKind::MaxPooling2D: launch("window_maxpool_kernel", window_maxpool_kernel, grid, dim3(kBlock), st, a); break;
      case NodeKind::Dense: launch("window_layer_kernel<Dense>", window_layer_kernel<NodeKind::Dense>, grid, dim3(kBlock), st, a); break;
      case NodeKind::Conv2D: launch("window_layer_kernel<Conv2D>", window_layer_kernel<NodeKind::Conv2D>, grid, dim3(kBlock), st, a); break;
      case NodeKind::DepthwiseConv2D:
        launch("window_layer_kernel<DepthwiseConv2D>", window_layer_kernel<NodeKind::DepthwiseConv2D>, grid, dim3(kBlock), st, a);
        break;
      case NodeKind::AveragePooling2D:
        launch("window_layer_kernel<AveragePooling2D>", window_layer_kernel<NodeKind::AveragePooling2D>, grid, dim3(kBlock), st, a);
        break;
      case NodeKind::Add: launch("window_layer_kernel<Add>", window_layer_kernel<NodeKind::Add>, grid, dim3(kBlock), st, a); break;
      default:
        throw std::logic_error("enqueue_window_step: unknown node kind");
    }
  }
  const WindowReadoutArgs r{m.layers, m.layer_partial_offset.data(), m.layer_partial_blocks.data(),
                            m.input_partial_offset, blocks_for(m.in_size, kBlock), m.batch.partial_spikes.data(),
                            m.batch.partial_ops.data(), m.partial_stride, m.steps, m.batch.spike_counts.data(),
                            m.batch.synops.data(), m.control.data()};
  launch("window_readout_kernel", window_readout_kernel, dim3(unsigned(n)), dim3(kReadoutBlock), st, r);
  launch("advance_step_kernel", advance_step_kernel, dim3(1), dim3(1), st, m.control.data());
}

}  // namespace
}  // namespace cuda

// The window coding: the input's spike steps, one graph launch per step up
// to R_out (nothing changes after it), then the decision.
void CudaEngine::Impl::run_chunk_window(const float* x, int64_t n) {
  cudaStream_t st = stream.get();
  const cudaGraphExec_t step = graphs.get(n, st, [&] { enqueue_window_step(*this, n); });
  const Control start{1, int(n), 0};
  TTFS_CUDA_CHECK(cudaMemcpyAsync(control.data(), &start, sizeof start, cudaMemcpyHostToDevice, st));
  launch("window_input_kernel", window_input_kernel, dim3(blocks_for(in_size, kBlock), unsigned(n)), dim3(kBlock),
         st, x, in_size, window_config, fired_view(*this));
  for (int t = 1; t <= window_config.read_step; ++t) TTFS_CUDA_CHECK(cudaGraphLaunch(step, st));
  const WindowFinishArgs fin{int(classes), steps, window_config.read_step, early_stop ? window_config.read_step : steps,
                             batch.output_membrane.data(), batch.counts.data(), batch.synops.data(),
                             batch.stop_step.data()};
  launch("window_finish_kernel", window_finish_kernel, dim3(unsigned(n)), dim3(kReadoutBlock), st, fin);
}

}  // namespace ttfs
