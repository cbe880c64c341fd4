// CudaEngine's device memory: the per-sample buffers of a chunk (one list,
// visit_batch_buffers, sizes them and allocates them), the history slots of
// the layer-major loop, how many samples a chunk holds within the free
// memory (or cuda_memory_limit), and the copies in and out of a chunk.
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine_impl.cuh"

namespace ttfs {

namespace cuda {
namespace {

std::string human_bytes(size_t bytes) {
  char text[32];
  if (bytes < (size_t(1) << 20))
    std::snprintf(text, sizeof text, "%.1f KiB", double(bytes) / 1024.0);
  else
    std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / double(1 << 20));
  return text;
}

template <typename T>
void copy_out(T* to, const DeviceBuffer<T>& device, int64_t count, cudaStream_t stream, bool to_device = false) {
  if (count > 0)
    TTFS_CUDA_CHECK(cudaMemcpyAsync(to, device.data(), size_t(count) * sizeof(T),
                                    to_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost,
                                    stream));
}

}  // namespace
}  // namespace cuda

using namespace cuda;

// A node's history is needed until its last reader (the readout, for the
// last node) has run; after that its buffers can hold a later node's. Each
// node takes the largest free slot, or a new one; the last node always a
// slot of its own: with early stop, a later window still writes the
// samples that run on into a shared slot (a sample's region there depends
// on the node's size), while the readout reads the stopped ones' output.
void CudaEngine::Impl::assign_history_slots() {
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

// The single list of per-sample buffers: visit(buffer, elements per sample).
template <typename Visit>
void CudaEngine::Impl::visit_batch_buffers(BatchBuffers& b, Visit&& visit) {
  const bool step_major = !layer_major && !window;  // (the original coding's step loop)
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
    visit(b.state[i], int64_t(step_major || window ? d.state_fields : window_fields) * d.size);
    const bool event_driven = step_major && events && node.integrates();
    const bool window_sums = windowed && node.integrates();
    const bool add_sums = window && node.kind == NodeKind::Add;  // the window coding: D(t) of its groups
    visit(b.sums[i], event_driven || window_sums ? 2 * int64_t(d.size) : add_sums ? int64_t(d.size) : 0);
    // (an open node scatters into its Add's sums, but reads its own input's cell lists)
    const bool lists = (event_driven || (step_major && events && node.open)) && uses_cell_lists(node);
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
  visit(b.partial_spikes, step_major || window ? partial_stride : 0);
  visit(b.partial_ops, step_major || window ? partial_stride : 0);
  visit(b.class_count, step_major ? classes : 0);
  visit(b.first_on, layer_major ? int64_t(nodes.size()) : 0);
  visit(b.changed, layer_major ? int64_t(nodes.size()) * steps : 0);
  visit(b.out_on, layer_major && nodes.back().softmax ? steps * classes : 0);
  visit(b.step_spikes, layer_major ? int64_t(layers) * steps : 0);
  visit(b.step_ops, layer_major ? steps : 0);
  visit(b.done, layer_major && early_stop ? 1 : 0);
  visit(b.fired, window ? row : 0);
  visit(b.fired_off, window && window_config.signed_input ? row : 0);
  visit(b.output_membrane, window ? classes : 0);
  visit(b.spike_counts, layers);
  visit(b.synops, steps);
  visit(b.counts, classes * steps);
  visit(b.stop_step, 1);
}

// Device memory one sample of a chunk needs, and how many allocations a chunk makes.
std::pair<size_t, size_t> CudaEngine::Impl::per_sample_bytes() {
  BatchBuffers scratch;
  size_t bytes = 0, allocations = 0;
  visit_batch_buffers(scratch, [&](auto& buffer, int64_t per_sample) {
    using T = typename std::decay_t<decltype(buffer)>::value_type;
    bytes += size_t(per_sample) * sizeof(T);
    allocations += per_sample > 0;
  });
  return {bytes, allocations};
}

void CudaEngine::Impl::allocate(int64_t capacity) {
  batch = BatchBuffers{};
  visit_batch_buffers(batch, [&](auto& buffer, int64_t per_sample) {
    using T = typename std::decay_t<decltype(buffer)>::value_type;
    buffer = DeviceBuffer<T>(size_t(per_sample) * size_t(capacity));
  });
  batch.capacity = capacity;
  if (layer_major) {
    std::vector<History> histories;
    for (size_t i = 0; i < nodes.size(); ++i) histories.push_back(history(i));
    batch.histories = DeviceBuffer<History>::from_host(histories.data(), histories.size(), stream.get());
  }
}

// Node i's output history in the chunk buffers (layer-major).
History CudaEngine::Impl::history(size_t i) {
  const DeviceNode& d = nodes[i];
  const int k = history_slot[i];  // -1: the softmax output keeps none
  auto in_slot = [k](auto& buffers) { return k < 0 ? nullptr : buffers[k].data(); };
  return History{in_slot(batch.planes), in_slot(batch.on_step), in_slot(batch.on_value),
                 in_slot(batch.p_value), batch.first_on.data() + i, int(nodes.size()),
                 batch.changed.data() + int64_t(i) * batch.capacity * steps, d.size, d.words, steps};
}

// Makes room for up to `samples` samples at once (reusing the buffers when
// they are large enough) and returns the chunk size that runs will use.
int64_t CudaEngine::Impl::ensure_capacity(int64_t samples) {
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

// The results of a chunk's n samples, to rows row0.. of `out`; returns when done.
void CudaEngine::Impl::copy_results(int64_t n, const Results& out, int64_t row0) {
  cudaStream_t st = stream.get();
  copy_out(out.counts + row0 * classes * steps, batch.counts, n * classes * steps, st);
  for (size_t l = 0; l < out.first_spike.size(); ++l) {
    const int64_t size = nodes[spiking[l]].size;
    copy_out(out.first_spike[l] + row0 * size, batch.first_spike[l], n * size, st, out.first_spike_on_device);
  }
  copy_out(out.spike_counts + row0 * layers, batch.spike_counts, n * layers, st);
  copy_out(out.synops + row0 * steps, batch.synops, n * steps, st);
  copy_out(out.stop_step + row0, batch.stop_step, n, st);
  if (out.output_membrane) copy_out(out.output_membrane + row0 * classes, batch.output_membrane, n * classes, st);
  TTFS_CUDA_CHECK(cudaStreamSynchronize(st));
}


const float* CudaEngine::Impl::chunk_input(const float* x, bool on_device, int64_t n) {
  if (on_device) return x;  // read in place
  TTFS_CUDA_CHECK(cudaMemcpyAsync(batch.x.data(), x, size_t(n) * in_size * sizeof(float), cudaMemcpyHostToDevice,
                                  stream.get()));
  return batch.x.data();
}

}  // namespace ttfs
