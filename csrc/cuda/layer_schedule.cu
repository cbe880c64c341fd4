// The layer-major loop (cuda_schedule = Layer; layer_history.cuh describes
// it): per window of steps, one launch per node running the window's steps,
// then with early stop a check of which samples stopped; after the last
// window (or once every sample stopped), the readout. Not the default until
// it has been timed on a GPU.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine_impl.cuh"
#include "launch_profiler.cuh"
#include "layer_kernels.cuh"

namespace ttfs {

namespace cuda {
namespace {

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

LayerMajorArgs layer_major_args(CudaEngine::Impl& m, size_t i, int64_t sample_offset, StepWindow w) {
  const Node& node = m.net.nodes[i];
  const DeviceNode& d = m.nodes[i];
  LayerMajorArgs a{};
  a.g = node.geom;
  a.size = d.size;
  a.kernel = d.kernel.data();
  a.bias_dt = d.bias_dt.data();  // null without bias
  a.pool_count = d.pool_count.data();
  a.in = m.history(node.inbound[0]);
  a.out = m.history(i);
  a.r = LayerRecords{m.batch.first_spike[d.slot].data(), d.fanout.data(),
                     m.batch.step_spikes.data() + int64_t(d.slot) * m.steps, int64_t(m.layers) * m.steps,
                     m.batch.step_ops.data()};
  a.p = m.params;
  a.sample_offset = sample_offset;
  a.out_on = m.batch.out_on.data();
  a.warp_chunks = warp_scan_chunks(node);
  a.w = w;
  a.state = WindowState{m.batch.sums[i].data(), m.batch.state[i].data(), m.batch.capacity * d.size};
  a.done = m.batch.done.data();  // null without early stop
  return a;
}

}  // namespace
}  // namespace cuda

using namespace cuda;

// Per window of steps, one launch per node (each running the window's
// steps), then with early stop a check of which samples stopped; after the
// last window (or once every sample stopped), the readout.
void CudaEngine::Impl::run_chunk_layer(const float* x, int64_t n, int64_t sample_offset) {
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
  LaunchProfiler profiler(profile, st);
  profiler.mark("start");
  for (int first = 1; first <= steps; first += window_steps) {
    const StepWindow w{first, std::min(steps, first + window_steps - 1)};
    const std::string in_window =
        window_steps < steps ? ", steps " + std::to_string(w.first) + "-" + std::to_string(w.last) : "";
    launch("layer_input_kernel", layer_input_kernel, dim3(blocks_for(in_size, kBlock), samples), dim3(kBlock),
           st, x, in_size, params.dt, history(0), w, batch.done.data());
    profiler.mark(net.nodes[0].name + " (input" + in_window + ")");
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
               layer_major_args(*this, i, sample_offset, w));
      } else if (d.softmax) {  // a block per (position, sample), a thread per class
        const int classes_here = node.geom.out_c;
        launch_layer_integrate(node.kind, true, dim3(unsigned(d.size / classes_here), samples),
                               dim3(unsigned((classes_here + 31) / 32 * 32)), st,
                               layer_major_args(*this, i, sample_offset, w));
      } else {
        launch_layer_integrate(node.kind, false, grid, dim3(kBlock), st, layer_major_args(*this, i, sample_offset, w));
      }
      profiler.mark(node.name + " (" + std::to_string(d.size) + " elements" + in_window + ")");
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
      profiler.mark("stop check" + in_window);
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
  profiler.mark("readout");
  if (profiler.on()) {
    TTFS_CUDA_CHECK(cudaStreamSynchronize(st));
    profiler.report("layer-major, " + std::to_string(n) + " samples, " + std::to_string(steps) + " steps");
  }
}

}  // namespace ttfs
