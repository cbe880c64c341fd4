// CUDA backend: set-up, the chunk loop of a run, and the device queries.
// Per chunk: copy the input (unless it is on the device already), run the
// time loop (step_schedule.cu: one captured CUDA graph per step; or
// layer_schedule.cu: one launch per node running every step), then copy the
// results back once. All state lives in device buffers allocated once per
// chunk capacity and reused across runs (buffers.cu); the weights are copied
// to the device once, by the constructor. Every copy and kernel runs on the
// engine's stream; a run returns only once that stream is idle, also when it
// throws, so Python never frees memory that queued work still uses.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine_impl.cuh"

namespace ttfs {

namespace cuda {
namespace {

constexpr int kMinStopWindow = 8;  // layer-major early stop: the shortest default window

// Whether the network has a residual Add: only the step loop's event-driven
// synapses integrate one (add_group_kernel), so it runs that way whatever the
// options ask (they choose how, never what).
bool has_add(const Network& net) {
  for (const Node& node : net.nodes)
    if (node.kind == NodeKind::Add) return true;
  return false;
}

// Whether the layer-major kernels cover this network: a softmax only as the
// output (its history is read by no layer) with at most one block of classes;
// no Add.
bool layer_major_supported(const Network& net) {
  if (has_add(net)) return false;
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const Node& node = net.nodes[i];
    if (node.softmax && (i + 1 != net.nodes.size() || node.geom.out_c > 1024)) return false;
  }
  return true;
}

// Sets *found if any of x[0, n) is NaN or Inf (device input is checked
// before a run, as the host checks host input). Every writer stores 1.
__global__ void nonfinite_kernel(const float* __restrict__ x, int64_t n, int* found) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    if (!isfinite(x[i])) *found = 1;
}

}  // namespace
}  // namespace cuda

using namespace cuda;

CudaEngine::Impl::Impl(const Network& network, const SimConfig& cfg, const EngineOptions& options)
    : net(network) {
  if (net.nodes.empty() || net.nodes[0].kind != NodeKind::Input)
    throw std::invalid_argument("CudaEngine: the network must start with its input node");
  TTFS_CUDA_CHECK(cudaGetDevice(&device));
  cudaStream_t s = nullptr;
  TTFS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream.reset(s);
  params = StepParams{cfg.dt, cfg.v_thresh, cfg.tau_refrac, cfg.end_tau(), cfg.leak ? 1 : 0,
                      cfg.steps, cfg.early_stop ? 1 : 0, cfg.seed};
  early_stop = cfg.early_stop;
  record_spike_times = cfg.record_spike_times;
  events = options.cuda_synapses == CudaSynapses::Events || has_add(net);
  window = cfg.coding == Coding::Window;
  window_config = cfg.window;
  if (window && options.cuda_schedule == CudaSchedule::Layer)
    throw std::invalid_argument("the ttfs-window coding runs on the step schedule only; use cuda_schedule='step'");
  if (window && cfg.steps < cfg.window.read_step)
    throw std::invalid_argument("window coding: the output is read at step " + std::to_string(cfg.window.read_step) +
                                ", but the run has only " + std::to_string(cfg.steps) + " steps");
  layer_major = options.cuda_schedule == CudaSchedule::Layer && layer_major_supported(net);
  window_steps = std::min(cfg.steps, kMaxWindowSteps);
  if (cfg.early_stop) window_steps = std::min(window_steps, std::max(kMinStopWindow, (cfg.steps + 3) / 4));
  if (options.cuda_window != 0) {
    if (options.cuda_window < 1 || options.cuda_window > kMaxWindowSteps)
      throw std::invalid_argument("cuda_window=" + std::to_string(options.cuda_window) +
                                  ": use a number of steps from 1 to " + std::to_string(kMaxWindowSteps));
    window_steps = std::min(options.cuda_window, cfg.steps);
  }
  if (layer_major && early_stop) running = DeviceBuffer<int>(1);
  memory_limit = size_t(options.cuda_memory_limit);
  profile = options.cuda_profile;
  steps = cfg.steps;
  spiking = net.spiking_nodes();
  layers = int(spiking.size());
  classes = net.num_classes();
  in_size = net.nodes[0].size;
  flag_row = 2 * int(net.nodes.size()) + 1;
  upload_nodes(cfg);
  assign_history_slots();
  control = DeviceBuffer<Control>(1);
  TTFS_CUDA_CHECK(cudaStreamSynchronize(stream.get()));  // the uploads are complete
}

// Every node's constants on the device (copied on the engine's stream) and
// its place in the shared buffers.
void CudaEngine::Impl::upload_nodes(const SimConfig& cfg) {
  cudaStream_t st = stream.get();
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
    if (node.integrates() || node.open) {
      d.state_fields = node.open ? 0 : kIntegratingFields;  // (an open node's sums are its Add's)
      d.kernel = DeviceBuffer<float>::from_host(node.kernel.data(), node.kernel.size(), st);
      std::vector<float> bias_dt;  // b * dt, as the CPU engine computes it
      for (float b : node.bias) bias_dt.push_back(b * cfg.dt);
      d.bias_dt = DeviceBuffer<float>::from_host(bias_dt.data(), bias_dt.size(), st);
      d.pool_count = DeviceBuffer<float>::from_host(node.pool_count.data(), node.pool_count.size(), st);
    } else if (node.kind == NodeKind::MaxPooling2D) {
      d.state_fields = kMaxPoolFields;
    }
    if (node.kind == NodeKind::Add) {
      d.inbound = DeviceBuffer<int>::from_host(node.inbound.data(), node.inbound.size(), st);
    } else if (node.kind == NodeKind::Gather) {
      d.inbound = DeviceBuffer<int>::from_host(node.inbound.data(), node.inbound.size(), st);
      std::vector<int64_t> source(node.size);
      for (int64_t e = 0; e < node.size; ++e) {
        const int slot = node.gather_input[e];
        source[e] = slot < 0 ? -1 : nodes[node.inbound[slot]].signal_offset + node.gather_element[e];
      }
      d.gather_source = DeviceBuffer<int64_t>::from_host(source.data(), source.size(), st);
      std::vector<int> source_node(node.size), source_element(node.size);
      for (int64_t e = 0; e < node.size; ++e) {
        const int slot = node.gather_input[e];
        source_node[e] = slot < 0 ? -1 : node.inbound[slot];
        source_element[e] = slot < 0 ? 0 : int(node.gather_element[e]);
      }
      d.source_node = DeviceBuffer<int>::from_host(source_node.data(), source_node.size(), st);
      d.source_element = DeviceBuffer<int>::from_host(source_element.data(), source_element.size(), st);
    }
    if (window) upload_window(node, d, st);
    if (node.is_spiking()) {
      d.slot = int(partial_offsets.size());
      d.fanout = DeviceBuffer<double>::from_host(node.fanout.data(), node.fanout.size(), st);
      d.record_blocks = blocks_for(node.softmax ? node.size / node.geom.out_c : node.size, kBlock);
      d.partial_offset = partial_stride;
      partial_offsets.push_back(partial_stride);
      partial_blocks.push_back(d.record_blocks);
      partial_stride += d.record_blocks;
    }
  }
  if (window) {  // the input spikes in this coding: its operations get partial sums too
    input_partial_offset = partial_stride;
    partial_stride += blocks_for(net.nodes[0].size, kBlock);
  }
  layer_partial_offset = DeviceBuffer<int>::from_host(partial_offsets.data(), partial_offsets.size(), st);
  layer_partial_blocks = DeviceBuffer<int>::from_host(partial_blocks.data(), partial_blocks.size(), st);
}

// A node's constants of the window coding (Node::window), on the device.
void CudaEngine::Impl::upload_window(const Node& node, DeviceNode& d, cudaStream_t st) {
  const WindowNode& w = node.window;
  if (node.is_spiking() && w.ref < 1)
    throw std::invalid_argument("window coding: node '" + node.name + "' lacks its window constants");
  d.window_start = w.start;
  d.window_ref = w.ref;
  d.theta = DeviceBuffer<float>::from_host(w.theta.data(), w.theta.size(), st);
  d.window_weight = DeviceBuffer<float>::from_host(w.weight.data(), w.weight.size(), st);
  if (&node == &net.nodes.back()) d.window_bias = DeviceBuffer<float>::from_host(node.bias.data(), node.bias.size(), st);
  if (node.kind == NodeKind::Input) {
    if (int64_t(node.fanout.size()) != node.size || w.ref != window_config.input_ref())
      throw std::invalid_argument("window coding: the input node lacks its window constants");
    d.fanout = DeviceBuffer<double>::from_host(node.fanout.data(), node.fanout.size(), st);
  } else if (node.kind == NodeKind::Gather) {
    if (w.delay.size() != node.inbound.size())
      throw std::invalid_argument("window coding: gather '" + node.name + "' lacks its delays");
    std::vector<int> delay(size_t(node.size), 0);
    for (int64_t e = 0; e < node.size; ++e)
      if (node.gather_input[size_t(e)] >= 0) delay[size_t(e)] = w.delay[size_t(node.gather_input[size_t(e)])];
    d.gather_delay = DeviceBuffer<int>::from_host(delay.data(), delay.size(), st);
  } else if (node.open) {
    if (w.delay.size() != 1)
      throw std::invalid_argument("window coding: synapse group '" + node.name + "' lacks its delay");
    d.window_delay = w.delay[0];
  } else if (node.integrates() && &node != &net.nodes.back() && w.theta.size() != size_t(node.geom.out_c)) {
    throw std::invalid_argument("window coding: node '" + node.name + "' lacks its thresholds");
  }
  if (&node == &net.nodes.back() && (!node.integrates() || w.ref != window_config.read_step))
    throw std::invalid_argument("window coding: the output must be a weighted layer read at R_out");
  d.state_fields = node.integrates() ? kWindowStateFields : 0;
}

CudaEngine::Impl::~Impl() {
  // Free on the engine's device, after any work still in flight; `caller`
  // then restores the caller's device (errors are ignored: nothing may
  // throw here, e.g. at interpreter exit).
  if (cudaGetDevice(&caller.device) != cudaSuccess) caller.device = -1;
  cudaSetDevice(device);
  if (stream) cudaStreamSynchronize(stream.get());
}

void CudaEngine::Impl::run(const Input& in, const Results& out) {
  try {
    const int64_t chunk = ensure_capacity(in.samples);
    for (int64_t start = 0; start < in.samples; start += chunk) {
      const int64_t n = std::min(chunk, in.samples - start), first = in.sample_offset + start;
      const float* x = chunk_input(in.data + start * in_size, in.on_device, n);
      if (window)
        run_chunk_window(x, n);
      else if (layer_major)  // the kernels take the chunk's first sample for the softmax draws
        run_chunk_layer(x, n, in.stream_offset + first);
      else
        run_chunk_step(x, n, in.stream_offset + first);
      copy_results(n, out, first);
    }
  } catch (...) {
    // Let the work already queued finish before the caller frees its memory.
    cudaStreamSynchronize(stream.get());
    cudaGetLastError();
    throw;
  }
}

CudaEngine::CudaEngine(const Network& net, const SimConfig& config, const EngineOptions& options)
    : Engine(net, config, options), impl_(std::make_unique<Impl>(net_, config_, options_)) {}

CudaEngine::~CudaEngine() = default;

void CudaEngine::run(const Input& in, const Results& out) const {
  check_run(in, out);
  if (in.on_device && in.device != device())
    throw std::invalid_argument("input on CUDA device " + std::to_string(in.device) +
                                ", the engine runs on device " + std::to_string(device()));
  if (out.first_spike_on_device && out.device != device())
    throw std::invalid_argument("first-spike arrays on CUDA device " + std::to_string(out.device) +
                                ", the engine runs on device " + std::to_string(device()));
  if (in.samples == 0) return;
  Impl& m = *impl_;
  const std::lock_guard<std::mutex> lock(m.mutex);
  const DeviceScope scope(m.device);
  m.run(in, out);
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

// On the legacy default stream, then waited for: an engine's stream (which
// does not synchronise with that one) may read the memory as soon as this returns.
void DeviceMemory::copy_from_host(const void* host, size_t bytes) {
  if (bytes > bytes_) throw std::invalid_argument("DeviceMemory: copy larger than the allocation");
  const DeviceScope scope(device_);
  if (bytes == 0) return;
  TTFS_CUDA_CHECK(cudaMemcpyAsync(data_, host, bytes, cudaMemcpyHostToDevice, nullptr));
  TTFS_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

void DeviceMemory::copy_to_host(void* host, size_t bytes) const {
  if (bytes > bytes_) throw std::invalid_argument("DeviceMemory: copy larger than the allocation");
  const DeviceScope scope(device_);
  if (bytes == 0) return;
  TTFS_CUDA_CHECK(cudaMemcpyAsync(host, data_, bytes, cudaMemcpyDeviceToHost, nullptr));
  TTFS_CUDA_CHECK(cudaStreamSynchronize(nullptr));
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
    status = cudaFuncGetAttributes(&attributes, nonfinite_kernel);
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
