// CPU backend: samples in parallel (OpenMP), each simulated step by step with
// event-driven synaptic input (only changed presynaptic elements scatter);
// with fewer samples than threads, the threads share each sample's large
// layers instead. The kernels are in cpu_kernels.h.
#pragma once

#include <memory>

#include "../core/engine.h"
#include "window_runner.h"

namespace ttfs {

namespace cpu {
struct CpuKernelSet;
}

// What the CPU engine prepares once for an integrating node.
struct CpuNodeTables {
  std::vector<float> bias_dt;     // per neuron, b * dt (zeros without a bias)
  std::vector<float> pool_count;  // AveragePooling2D: cells in each neuron's window
  // Conv2D where conv_rows_apply: the kernel in row layout (synapse.h); other
  // weighted layers scatter from the node's kernel
  std::vector<float> rows;
  double synapses_per_input = 0.0;  // connections / input elements: the scatter's work per input change
};

// When a batch has fewer samples than threads, the threads share a sample's
// layers where these are large enough to repay a fork and join (measured on
// 2 cores, VGG-style batch 1: 1.85x); EngineOptions::cpu_share = All shares
// every layer, to test the sharing on small networks.
struct SharePolicy {
  double min_scatter = 65536;  // synapse updates of a layer's scatter in a step
  int64_t min_pass = 32768;    // neurons of a layer's neuron pass
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(const Network& net, const SimConfig& config, const EngineOptions& options = {});
  // Host input only; runs on options().cpu_threads threads (0: max_threads()).
  void run(const Input& in, const Results& out) const override;
  // The kernels this engine runs: "avx512", "avx2" or "generic".
  const char* kernels() const;

 private:
  // run() with running sums of type Acc (EngineOptions::cpu_sums)
  template <typename Acc>
  void run_samples(const Input& in, const Results& out) const;

  const cpu::CpuKernelSet& kernels_;
  std::vector<int> spiking_;            // node index of each spiking layer
  std::vector<int> spiking_slot_;       // node index -> slot in spiking_ (-1 if none)
  std::vector<CpuNodeTables> tables_;   // per node
  SharePolicy share_policy_;
  bool shares_layers_ = false;          // some layer reaches share_policy_.min_pass
  std::unique_ptr<CpuWindowPlan> window_;  // coding == Window: that coding's runner (window_runner.h)
};

int max_threads();
// The CPU kernels that `requested` resolves to on this CPU: "avx512", "avx2" or "generic".
const char* cpu_kernels(CpuKernels requested);
bool openmp_enabled();

}  // namespace ttfs
