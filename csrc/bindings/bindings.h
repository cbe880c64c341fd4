// Python bindings of the compiled core, one file per concern: the network
// handed over by plan.py (network.cpp), the engines with their options,
// input and results (engines.cpp), and DLPack input and DeviceArray
// (dlpack.cpp). module.cpp ties them together. Long native calls release
// the GIL.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dlpack_abi.h"
#ifdef TTFS_WITH_CUDA
#include "../cuda/engine_cuda.h"
#endif

namespace ttfs {
namespace bindings {

namespace py = pybind11;

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;
// An array written in place: C order, the exact dtype, never a converted copy.
template <typename T>
using OutArray = py::array_t<T, py::array::c_style>;

void bind_network(py::module_& m);
void bind_engines(py::module_& m);
void bind_dlpack(py::module_& m);

// An array received through DLPack: takes ownership of the capsule's tensor
// (renaming the capsule "used_dltensor") and calls its deleter on close() or
// destruction. Describes it for the checks in Python; an Input made of it
// points into it (engines.cpp).
class DLPackInput {
 public:
  explicit DLPackInput(const py::capsule& capsule);
  ~DLPackInput() { close(); }
  DLPackInput(const DLPackInput&) = delete;
  DLPackInput& operator=(const DLPackInput&) = delete;

  void close();
  const dlpack::Tensor& tensor() const;
  std::vector<int64_t> shape() const;
  std::pair<int, int> device() const { return {tensor().device.device_type, tensor().device.device_id}; }
  bool on_cuda_device() const;  // CUDA or CUDA managed memory
  // "float32", "int64", ...; "code<c>" for other type codes; "x<lanes>" if vectorised
  std::string dtype() const;
  bool c_contiguous() const;
  uintptr_t data() const;

 private:
  dlpack::ManagedTensor* tensor_ = nullptr;
};

#ifdef TTFS_WITH_CUDA
// float32 device memory handed to Python: a DLPack producer (zero-copy into
// PyTorch, CuPy, JAX via their from_dlpack), copied to the host by numpy().
struct DeviceArray {
  std::shared_ptr<DeviceMemory> memory;
  std::vector<int64_t> shape;

  DeviceArray(std::vector<int64_t> dims, int device);
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  float* data() const { return static_cast<float*>(memory->data()); }
  py::array_t<float> numpy() const;
  // The capsule of __dlpack__: its tensor keeps the memory alive until the
  // consumer calls the deleter (or, unconsumed, the capsule is destroyed).
  py::capsule dlpack() const;
};
#endif

}  // namespace bindings
}  // namespace ttfs
