// CPU backend: samples in parallel (OpenMP), each simulated step by step with
// event-driven synaptic input (only changed presynaptic elements scatter).
#pragma once

#include "../core/network.h"
#include "../core/sim_config.h"

namespace ttfs {

class CpuEngine {
 public:
  CpuEngine(const Network& net, const SimConfig& config);
  // x: (N, input size) float32; results for samples sample_offset .. +N.
  void run(const float* x, int64_t samples, int64_t sample_offset, const ResultViews& out,
           int num_threads) const;
  const Network& network() const { return net_; }
  const SimConfig& config() const { return config_; }

 private:
  const Network net_;
  const SimConfig config_;
  std::vector<int> spiking_;            // node index of each spiking layer
  std::vector<int> spiking_slot_;       // node index -> slot in spiking_ (-1 if none)
  std::vector<std::vector<float>> bias_dt_;     // per node and neuron, b * dt
  std::vector<std::vector<float>> pool_count_;  // AveragePooling2D: cells per neuron's window
};

int max_threads();
bool openmp_enabled();

}  // namespace ttfs
