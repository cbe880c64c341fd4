// EngineOptions::cuda_profile: the layer-major loop records a CUDA event
// after each launch and prints the time between them to stderr, for tuning
// on a GPU. Off by default (then mark() does nothing).
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "device_buffer.cuh"

namespace ttfs {
namespace cuda {

class LaunchProfiler {
 public:
  LaunchProfiler(bool on, cudaStream_t stream) : on_(on), stream_(stream) {}
  bool on() const { return on_; }

  // An event after what `stream` has queued so far, named for that work.
  void mark(std::string what) {
    if (!on_) return;
    cudaEvent_t e = nullptr;
    TTFS_CUDA_CHECK(cudaEventCreate(&e));
    marks_.emplace_back(std::move(what), Event(e));
    TTFS_CUDA_CHECK(cudaEventRecord(e, stream_));
  }

  // Prints the time of each marked stretch; call after the stream synchronised.
  void report(const std::string& title) const {
    if (!on_) return;
    std::fprintf(stderr, "cuda_profile %s:\n", title.c_str());
    for (size_t m = 1; m < marks_.size(); ++m) {
      float ms = 0.0f;
      TTFS_CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[m - 1].second.get(), marks_[m].second.get()));
      std::fprintf(stderr, "  %9.3f ms  %s\n", double(ms), marks_[m].first.c_str());
    }
  }

 private:
  bool on_;
  cudaStream_t stream_;
  std::vector<std::pair<std::string, Event>> marks_;
};

}  // namespace cuda
}  // namespace ttfs
