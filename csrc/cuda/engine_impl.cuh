// CudaEngine's implementation, one concern per file: set-up, the run's
// chunk loop and the device queries (engine_cuda.cu); buffers, their
// history slots and chunking (buffers.cu); the step loop and its CUDA
// graphs (step_schedule.cu); the layer-major loop and its profiling
// (layer_schedule.cu). What passes between them is this struct.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "device_buffer.cuh"
#include "engine_cuda.h"
#include "graph_cache.cuh"
#include "kernel_common.cuh"
#include "layer_history.cuh"

namespace ttfs {
namespace cuda {

constexpr int64_t kMaxChunk = 65535;  // samples per chunk: gridDim.y limit

inline int blocks_for(int64_t count, int per_block) { return int((count + per_block - 1) / per_block); }

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
  DeviceBuffer<int> inbound;             // Gather, Add: inbound node indices
  DeviceBuffer<int64_t> gather_source;   // Gather: offset in the row, -1 = zero padding
  DeviceBuffer<int> source_node, source_element;  // Gather (layer-major): inbound node (-1: padding), element
  int words = 0;                         // layer-major: words of one step's history plane
  // The window coding (Node::window): W and R, thresholds per channel,
  // average pooling's ramp weights, the output's bias b_o (not times dt), a
  // Gather's delay per element.
  int window_start = 0, window_ref = 0;
  int window_delay = 0;  // an Add's synapse group: steps added to its input's spikes
  DeviceBuffer<float> theta, window_weight, window_bias;
  DeviceBuffer<int> gather_delay;
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
  // The window coding (window_kernels.cuh): per element the step it spikes at
  DeviceBuffer<int> fired, fired_off;             // [sample][row] (fired_off: signed input only)
  DeviceBuffer<float> output_membrane;            // [sample][classes]
};

// Event-driven Conv2D and Dense layers with many input channels read their
// input's changes through per-cell lists (cell_changes_kernel); the others
// test each input's stamp directly.
inline bool uses_cell_lists(const Node& node) {
  return (node.kind == NodeKind::Dense || node.kind == NodeKind::Conv2D) && node.geom.in_c > kDirectChannels;
}

// Restores the caller's device when destroyed (the first member of Impl, so
// the last destroyed: after the buffers were freed on the engine's device).
struct CallerDevice {
  int device = -1;
  ~CallerDevice() {
    if (device >= 0) cudaSetDevice(device);  // (errors ignored: destructors must not throw)
  }
};

}  // namespace cuda

struct CudaEngine::Impl {
  cuda::CallerDevice caller;
  const Network& net;
  int device = 0;
  cuda::StepParams params{};
  bool early_stop = false;
  bool record_spike_times = true;
  // Synaptic input of the step loop: event-driven (the changes of each step,
  // added to running sums) unless cuda_synapses = Gather asks for the full
  // fan-in gather (the first design, kept for comparison: nobody runs it by
  // default; synapse_gather.cuh).
  bool events = true;
  // The time loop: step by step (one CUDA graph launch per step), or layer
  // by layer when cuda_schedule = Layer asks for it and the network is
  // supported (layer_kernels.cuh: one launch per node, state in registers).
  bool layer_major = false;
  // The coding: the original (step_schedule.cu, layer_schedule.cu) or the
  // window coding (step_schedule.cu's run_chunk_window, up to R_out).
  bool window = false;
  WindowConfig window_config{};
  int input_partial_offset = 0;  // window coding: the input's spikes' partial sums
  // Layer-major: steps per window (layer_history.cuh). One window for the
  // whole run where the per-block totals allow (kMaxWindowSteps); with early
  // stop, windows of a quarter of the run (at least kMinStopWindow steps), so
  // that a run ends once every sample has stopped. cuda_window sets it.
  int window_steps = 0;
  cuda::DeviceBuffer<int> running;  // layer-major early stop: samples of the chunk still running
  size_t memory_limit = 0;          // bytes a chunk's buffers may take (0: what is free)
  bool profile = false;             // cuda_profile (launch_profiler.cuh)
  // Layer-major: which buffers hold each node's history (-1: none, the softmax
  // output), and the elements of the largest node each slot holds.
  std::vector<int> history_slot, slot_elements;
  int steps = 0;
  int64_t in_size = 0, row = 0, classes = 0;
  int flag_row = 0, partial_stride = 0, layers = 0;
  std::vector<int> spiking;
  std::vector<cuda::DeviceNode> nodes;
  cuda::DeviceBuffer<int> layer_partial_offset, layer_partial_blocks;
  cuda::DeviceBuffer<cuda::Control> control;
  cuda::Stream stream;
  cuda::BatchBuffers batch;
  cuda::GraphCache graphs;  // step loop: a graph per chunk size
  std::mutex mutex;

  // ---------------------------------------------------- engine_cuda.cu
  Impl(const Network& network, const SimConfig& cfg, const EngineOptions& options);
  ~Impl();
  void upload_nodes(const SimConfig& cfg);
  void upload_window(const Node& node, cuda::DeviceNode& d, cudaStream_t stream);
  // The chunk loop of a run (the caller holds the mutex and the device).
  void run(const Input& in, const Results& out);

  // ---------------------------------------------------- buffers.cu
  void assign_history_slots();
  template <typename Visit>
  void visit_batch_buffers(cuda::BatchBuffers& b, Visit&& visit);
  // Device memory one sample of a chunk needs, and how many allocations a chunk makes.
  std::pair<size_t, size_t> per_sample_bytes();
  void allocate(int64_t capacity);
  // Node i's output history in the chunk buffers (layer-major).
  cuda::History history(size_t i);
  // Makes room for up to `samples` samples at once (reusing the buffers when
  // they are large enough) and returns the chunk size that runs will use.
  int64_t ensure_capacity(int64_t samples);
  // The chunk's input in device memory: x itself if it is there already,
  // else its copy in the chunk buffers.
  const float* chunk_input(const float* x, bool on_device, int64_t n);
  // The results of a chunk's n samples, to rows row0.. of `out`; returns when done.
  void copy_results(int64_t n, const Results& out, int64_t row0);

  // ---------------------------------------------------- step_schedule.cu
  void run_chunk_step(const float* x, int64_t n, int64_t sample_offset);

  // The window coding's step loop (also step_schedule.cu).
  void run_chunk_window(const float* x, int64_t n);

  // ---------------------------------------------------- layer_schedule.cu
  void run_chunk_layer(const float* x, int64_t n, int64_t sample_offset);
};

}  // namespace ttfs
