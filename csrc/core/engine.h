// The one interface of the native engines (CpuEngine in cpu/, CudaEngine in
// cuda/: twins behind Engine::run, in the manner of pytorch_scatter's
// scatter_cpu / scatter_cuda), the options that choose how an engine works
// (mirrored by python/ttfs_native/simulation/options.py, which validates
// them and reads their environment defaults) and the views of a run's input
// and results.
#pragma once

#include <cstdint>
#include <vector>

#include "network.h"
#include "sim_config.h"

namespace ttfs {

// How an engine computes (never what: every choice gives the same results, except
// cpu_sums = Float32, which stays within the agreement contract).
enum class CpuShare : int { Auto = 0, All = 1 };            // share a sample's layers: large ones / every one
// the best the CPU has (AVX-512, else AVX2) / the portable ones / at most AVX2
enum class CpuKernels : int { Auto = 0, Generic = 1, Avx2 = 2 };
// The CPU engine's running sums of I and M: float64 (the default, bit-identical
// to earlier releases) or float32 (faster; results within SEMANTICS.md's
// agreement contract, not bit-identical: the one option that changes results)
enum class CpuSums : int { Float64 = 0, Float32 = 1 };
enum class CudaSchedule : int { Step = 0, Layer = 1 };      // the time loop (cuda/step_schedule.cu, layer_schedule.cu)
enum class CudaSynapses : int { Events = 0, Gather = 1 };   // step loop: event-driven input / full fan-in gather

struct EngineOptions {
  CpuShare cpu_share = CpuShare::Auto;
  CpuKernels cpu_kernels = CpuKernels::Auto;
  CpuSums cpu_sums = CpuSums::Float64;
  int cpu_threads = 0;                  // threads of a run (0: OpenMP's maximum)
  CudaSchedule cuda_schedule = CudaSchedule::Step;
  CudaSynapses cuda_synapses = CudaSynapses::Events;
  int cuda_window = 0;                  // layer-major steps per window (0: the engine's default)
  bool cuda_profile = false;            // layer-major: print each launch's time to stderr
  uint64_t cuda_memory_limit = 0;       // bytes a chunk's buffers may take (0: what is free)
};

// The samples of one call: (samples, input size) float32, C order, in host
// memory or (on_device) in the device memory of CUDA device `device`.
struct Input {
  const float* data = nullptr;
  int64_t samples = 0;
  int64_t sample_offset = 0;  // index of the first sample in the whole input (results row, softmax draws)
  // Added to a sample's index for its softmax draws only: a part of a larger
  // input simulated on its own (e.g. on a Ray worker) draws as in the whole.
  int64_t stream_offset = 0;
  bool on_device = false;
  int device = -1;
};

// Where an engine writes the results of a run, one row per sample of the
// whole input (a call writes rows sample_offset .. + samples), row-major.
struct Results {
  int64_t rows = 0;
  int32_t* counts = nullptr;                // (rows, classes, steps) cumulative
  std::vector<float*> first_spike;          // per spiking node: (rows, size), 0 = never; empty: not recorded
  bool first_spike_on_device = false;       // CUDA: first_spike points to device memory ...
  int device = -1;                          // ... of this device
  int64_t* spike_counts = nullptr;          // (rows, spiking nodes)
  double* synops = nullptr;                 // (rows, steps)
  int32_t* stop_step = nullptr;             // (rows,)
  float* output_membrane = nullptr;         // window coding, optional: (rows, classes) read-out values y
};

class Engine {
 public:
  Engine(const Network& net, const SimConfig& config, const EngineOptions& options)
      : net_(net), config_(config), options_(options) {}
  virtual ~Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Simulates `in` into rows in.sample_offset .. + in.samples of `out`;
  // returns when the results are complete. Throws std::invalid_argument for
  // an input or results the engine cannot take.
  virtual void run(const Input& in, const Results& out) const = 0;

  const Network& network() const { return net_; }
  const SimConfig& config() const { return config_; }
  const EngineOptions& options() const { return options_; }

 protected:
  // The checks every engine makes before a run.
  void check_run(const Input& in, const Results& out) const;

  const Network net_;
  const SimConfig config_;
  const EngineOptions options_;
};

}  // namespace ttfs
