// CUDA backend: the same interface as CpuEngine (core/engine.h). Samples run
// in parallel on one GPU, step by step (each step one CUDA graph launch: one
// fused kernel per node plus the readout) or layer by layer. CUDA types stay
// behind the pointer to the implementation (engine_impl.cuh), so this header
// compiles without the CUDA toolkit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "../core/engine.h"

namespace ttfs {

class CudaEngine final : public Engine {
 public:
  // Copies the weights to the current CUDA device; throws std::runtime_error
  // (CUDA's message and the failed call) if there is no usable device.
  CudaEngine(const Network& net, const SimConfig& config, const EngineOptions& options = {});
  ~CudaEngine() override;

  // Input in host memory, or in this engine's device memory (read in place);
  // results in host memory (first-spike times in this engine's device memory
  // if out.first_spike_on_device). Splits the samples into chunks that fit
  // the device's free memory. Thread-safe (runs on one engine are
  // serialised). Returns when the results are complete, also when it
  // throws (the work it queued has finished).
  void run(const Input& in, const Results& out) const override;
  int device() const;
  // The time loop this engine runs: "step" (one CUDA graph launch per step)
  // or "layer" (cuda_schedule = Layer on a network the layer-major kernels
  // support: one launch per node, each running all steps).
  const char* schedule() const;
  // Layer-major: steps per window (layer_history.cuh); 0 for the step loop.
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

  struct Impl;  // cuda/engine_impl.cuh

 private:
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
  // Both return when the copy is complete.
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
