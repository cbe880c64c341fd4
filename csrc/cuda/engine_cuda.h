// CUDA backend: the same interface as CpuEngine. Samples run in parallel on
// one GPU, step by step; each step is one CUDA graph launch (one fused
// kernel per node plus the readout). CUDA types stay behind the pointer to
// the implementation, so this header compiles without the CUDA toolkit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "../core/network.h"
#include "../core/sim_config.h"

namespace ttfs {

class CudaEngine {
 public:
  // Copies the weights to the current CUDA device; throws std::runtime_error
  // (CUDA's message and the failed call) if there is no usable device.
  CudaEngine(const Network& net, const SimConfig& config);
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // x: (N, input size) float32 in host memory; results for samples
  // sample_offset .. +N into host memory. Splits N into chunks that fit the
  // device's free memory. Thread-safe (runs on one engine are serialised).
  void run(const float* x, int64_t samples, int64_t sample_offset, const ResultViews& out,
           int num_threads_ignored) const;
  const Network& network() const { return net_; }
  const SimConfig& config() const { return config_; }

 private:
  struct Impl;
  const Network net_;
  const SimConfig config_;
  std::unique_ptr<Impl> impl_;
};

// (usable, reason): whether a CUDA device can run this build's kernels, and
// either the device's description or why not. Never throws; safe on machines
// without a driver or GPU.
std::pair<bool, std::string> cuda_device_status();

}  // namespace ttfs
