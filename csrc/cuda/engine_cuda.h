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

  // x: (N, input size) float32 in host memory, or in this engine's device
  // memory if x_on_device (read in place); results for samples
  // sample_offset .. +N into host memory (first-spike times into device
  // memory if out.first_spike_on_device). Splits N into chunks that fit the
  // device's free memory. Thread-safe (runs on one engine are serialised).
  // Returns when the results are complete.
  void run(const float* x, int64_t samples, int64_t sample_offset, const ResultViews& out,
           int num_threads_ignored, bool x_on_device = false) const;
  const Network& network() const { return net_; }
  const SimConfig& config() const { return config_; }
  int device() const;
  // The time loop this engine runs: "step" (one CUDA graph launch per step)
  // or "layer" (TTFS_CUDA_SCHEDULE=layer on a network the layer-major
  // kernels support: one launch per node, each running all steps).
  const char* schedule() const;
  // Layer-major: steps per window (layer_kernels.cuh); 0 for the step loop.
  int window_steps() const;
  // Device memory one sample of a chunk takes, and the samples per chunk of
  // the buffers allocated so far (0 before the first run).
  size_t bytes_per_sample() const;
  int64_t chunk_capacity() const;
  // The engine's stream (cudaStream_t), for the DLPack exchange: producers of
  // device input order their pending writes before it.
  uintptr_t stream_handle() const;
  // Whether `count` floats of device memory are all finite (no NaN or Inf).
  bool all_finite(const float* x, int64_t count) const;

 private:
  struct Impl;
  const Network net_;
  const SimConfig config_;
  std::unique_ptr<Impl> impl_;
};

// Device memory owned by an array handed to Python (DeviceArray), on one
// device. Freed by the destructor.
class DeviceMemory {
 public:
  DeviceMemory(size_t bytes, int device);
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  void copy_from_host(const void* host, size_t bytes);
  void copy_to_host(void* host, size_t bytes) const;

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// The calling thread's current CUDA device.
int cuda_current_device();

// (usable, reason): whether a CUDA device can run this build's kernels, and
// either the device's description or why not. Never throws; safe on machines
// without a driver or GPU.
std::pair<bool, std::string> cuda_device_status();

}  // namespace ttfs
