// CUDA graphs of the step loop: what a step launches, captured once per
// chunk size and replayed every step (one launch instead of one per node).
#pragma once

#include <utility>
#include <vector>

#include "device_buffer.cuh"

namespace ttfs {
namespace cuda {

// What enqueue() launches on `stream`, captured as an executable graph.
template <typename Enqueue>
GraphExec capture_graph(cudaStream_t stream, Enqueue&& enqueue) {
  TTFS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue();
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t raw = nullptr;
  TTFS_CUDA_CHECK(cudaStreamEndCapture(stream, &raw));
  const Graph graph(raw);
  cudaGraphExec_t exec = nullptr;
  TTFS_CUDA_CHECK(cudaGraphInstantiate(&exec, graph.get(), 0));
  return GraphExec(exec);
}

// The graphs of the last few keys (chunk sizes). Cleared whenever the
// buffers the graphs point into are reallocated.
class GraphCache {
 public:
  static constexpr int kMaxGraphs = 4;

  template <typename Enqueue>
  cudaGraphExec_t get(int64_t key, cudaStream_t stream, Enqueue&& enqueue) {
    for (auto& cached : graphs_)
      if (cached.first == key) return cached.second.get();
    if (int(graphs_.size()) >= kMaxGraphs) graphs_.erase(graphs_.begin());
    graphs_.emplace_back(key, capture_graph(stream, std::forward<Enqueue>(enqueue)));
    return graphs_.back().second.get();
  }
  void clear() { graphs_.clear(); }

 private:
  std::vector<std::pair<int64_t, GraphExec>> graphs_;
};

}  // namespace cuda
}  // namespace ttfs
