// Error checking and small RAII owners of CUDA resources (device memory, a
// stream, graphs). Every CUDA call of the backend goes through
// TTFS_CUDA_CHECK, which throws ttfs::cuda::CudaError (a std::runtime_error,
// so Python sees a RuntimeError) naming the failed call.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace ttfs {
namespace cuda {

class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& what) : std::runtime_error(what), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

[[noreturn]] inline void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  throw CudaError(code, std::string("CUDA error ") + cudaGetErrorName(code) + " (" +
                            cudaGetErrorString(code) + ") in " + call + " at " + file + ":" +
                            std::to_string(line));
}

}  // namespace cuda
}  // namespace ttfs

#define TTFS_CUDA_CHECK(call)                                                   \
  do {                                                                          \
    const cudaError_t ttfs_status_ = (call);                                    \
    if (ttfs_status_ != cudaSuccess)                                            \
      ::ttfs::cuda::throw_cuda_error(ttfs_status_, #call, __FILE__, __LINE__);  \
  } while (0)

namespace ttfs {
namespace cuda {

// Launch a kernel on `stream` and check the launch (configuration errors
// surface here; faults inside the kernel surface at the next synchronising
// call, which is checked too).
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
            Args&&... args) {
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw_cuda_error(status, name, __FILE__, __LINE__);
}

// Owns `count` elements of device memory. Movable, not copyable.
template <typename T>
class DeviceBuffer {
  static_assert(std::is_trivially_copyable<T>::value, "device buffers hold plain data");

 public:
  using value_type = T;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (count > 0) TTFS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)));
  }
  // A copy of host memory, queued on `stream` (the host memory may be freed
  // on return; work queued on `stream` after it sees the copy).
  static DeviceBuffer from_host(const T* host, size_t count, cudaStream_t stream) {
    DeviceBuffer buffer(count);
    if (count > 0)
      TTFS_CUDA_CHECK(cudaMemcpyAsync(buffer.data_, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
    return buffer;
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }

  // Destructors must not throw: a failed cudaFree (e.g. at interpreter exit,
  // after the runtime unloaded) is ignored.
  void release() noexcept {
    if (data_) cudaFree(data_);
    data_ = nullptr;
    count_ = 0;
  }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct GraphDeleter {
  void operator()(cudaGraph_t g) const noexcept { cudaGraphDestroy(g); }
};
struct GraphExecDeleter {
  void operator()(cudaGraphExec_t g) const noexcept { cudaGraphExecDestroy(g); }
};
struct EventDeleter {
  void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); }
};
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDeleter>;
using Event = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDeleter>;
using Graph = std::unique_ptr<std::remove_pointer_t<cudaGraph_t>, GraphDeleter>;
using GraphExec = std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, GraphExecDeleter>;

// Makes `device` current for a scope and restores the caller's device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    TTFS_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      TTFS_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
  }
  ~DeviceScope() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

}  // namespace cuda
}  // namespace ttfs
