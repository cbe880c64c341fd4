// The compiled core's module: its parts (bindings.h) and build facts.
#include "../core/philox.h"
#include "bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "ttfs-native compiled core";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  ttfs::bindings::bind_network(m);
  ttfs::bindings::bind_dlpack(m);
  ttfs::bindings::bind_engines(m);
  m.def("softmax_uniform", &ttfs::softmax_uniform, py::arg("seed"), py::arg("neuron"), py::arg("sample"),
        py::arg("step"), "The uniform number the softmax output draws (Philox4x32-10), for tests.");
#ifdef TTFS_WITH_CUDA
  m.attr("cuda_compiled") = true;
  m.attr("cuda_architectures") = TTFS_CUDA_ARCHS;
#else
  m.attr("cuda_compiled") = false;
  m.attr("cuda_architectures") = "";
#endif
#ifdef TTFS_VERSION
  m.attr("__version__") = TTFS_VERSION;
#endif
}
