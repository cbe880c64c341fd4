// Python bindings: the network description, the CPU and CUDA engines and build facts.
// Long native calls release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <string>

#include "core/network.h"
#include "core/philox.h"
#include "cpu/engine_cpu.h"
#ifdef TTFS_WITH_CUDA
#include "cuda/engine_cuda.h"
#endif

namespace py = pybind11;
using namespace ttfs;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
std::vector<T> to_vector(const CArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

template <typename T>
T* checked(py::array_t<T, py::array::c_style>& a, std::vector<py::ssize_t> shape, const char* what) {
  if (a.ndim() != py::ssize_t(shape.size())) throw py::value_error(std::string(what) + ": wrong rank");
  for (size_t d = 0; d < shape.size(); ++d)
    if (a.shape(d) != shape[d]) throw py::value_error(std::string(what) + ": wrong shape");
  if (!a.writeable()) throw py::value_error(std::string(what) + ": not writeable");
  return a.mutable_data();
}

void add_node(Network& net, int kind, const std::string& name, const std::vector<int>& inbound,
              const std::array<int, 15>& geom, int64_t size, bool softmax, const CArray<float>& kernel,
              const CArray<float>& bias, const CArray<float>& pool_count,
              const CArray<int32_t>& gather_input, const CArray<int64_t>& gather_element,
              const CArray<double>& fanout) {
  if (kind < 0 || kind > int(NodeKind::Gather)) throw py::value_error("unknown node kind");
  Node node;
  node.kind = NodeKind(kind);
  node.name = name;
  node.inbound = inbound;
  Geometry& g = node.geom;
  int* fields[15] = {&g.in_h, &g.in_w, &g.in_c, &g.out_h, &g.out_w, &g.out_c, &g.kernel_h,
                     &g.kernel_w, &g.stride_h, &g.stride_w, &g.dilation_h, &g.dilation_w,
                     &g.pad_top, &g.pad_left, &g.multiplier};
  for (int f = 0; f < 15; ++f) *fields[f] = geom[f];
  node.size = size;
  node.softmax = softmax;
  node.kernel = to_vector(kernel);
  node.abs_kernel = node.kernel;
  for (float& w : node.abs_kernel) w = std::fabs(w);
  node.bias = to_vector(bias);
  node.pool_count = to_vector(pool_count);
  node.gather_input = to_vector(gather_input);
  node.gather_element = to_vector(gather_element);
  node.fanout = to_vector(fanout);
  validate_node(net, node);  // throws std::invalid_argument -> ValueError
  net.nodes.push_back(std::move(node));
}

template <typename Engine>
void run_engine(const Engine& engine, py::array_t<float, py::array::c_style> x, int64_t sample_offset,
                py::array_t<int32_t, py::array::c_style> counts, py::list first_spike,
                py::array_t<int64_t, py::array::c_style> spike_counts,
                py::array_t<double, py::array::c_style> synops,
                py::array_t<int32_t, py::array::c_style> stop_step, int num_threads) {
  const Network& net = engine.network();
  const SimConfig& cfg = engine.config();
  if (x.ndim() != 2 || x.shape(1) != net.nodes[0].size)
    throw py::value_error("x must be (samples, input size) float32");
  const int64_t n = x.shape(0);
  const std::vector<int> spiking = net.spiking_nodes();
  ResultViews out;
  out.samples = n;
  out.counts = checked(counts, {n, net.num_classes(), cfg.steps}, "counts");
  out.spike_counts = checked(spike_counts, {n, py::ssize_t(spiking.size())}, "spike_counts");
  out.synops = checked(synops, {n, cfg.steps}, "synops");
  out.stop_step = checked(stop_step, {n}, "stop_step");
  if (py::len(first_spike) != 0 && py::len(first_spike) != spiking.size())
    throw py::value_error("first_spike: one array per spiking layer, or none");
  for (size_t l = 0; l < size_t(py::len(first_spike)); ++l) {
    auto a = first_spike[l].cast<py::array_t<float, py::array::c_style>>();
    out.first_spike.push_back(checked(a, {n, net.nodes[spiking[l]].size}, "first_spike"));
  }
  const float* xp = x.data();
  py::gil_scoped_release release;
  engine.run(xp, n, sample_offset, out, num_threads);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ttfs-native compiled core";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<Network>(m, "Network")
      .def(py::init<>())
      .def("add_node", &add_node, py::arg("kind"), py::arg("name"), py::arg("inbound"),
           py::arg("geometry"), py::arg("size"), py::arg("softmax"), py::arg("kernel"),
           py::arg("bias"), py::arg("pool_count"), py::arg("gather_input"),
           py::arg("gather_element"), py::arg("fanout"))
      .def_property_readonly("num_nodes", [](const Network& n) { return n.nodes.size(); })
      .def_property_readonly("num_classes", &Network::num_classes);

  py::class_<SimConfig>(m, "SimConfig")
      .def(py::init([](int steps, float dt, float v_thresh, float tau_refrac, bool leak,
                       uint64_t seed, bool early_stop) {
             if (steps < 1) throw py::value_error("steps must be >= 1");
             SimConfig c;
             c.steps = steps;
             c.dt = dt;
             c.v_thresh = v_thresh;
             c.tau_refrac = tau_refrac;
             c.leak = leak;
             c.seed = seed;
             c.early_stop = early_stop;
             return c;
           }),
           py::arg("steps"), py::arg("dt"), py::arg("v_thresh"), py::arg("tau_refrac"),
           py::arg("leak"), py::arg("seed"), py::arg("early_stop"));

  py::class_<CpuEngine>(m, "CpuEngine")
      .def(py::init<const Network&, const SimConfig&>(), py::arg("network"), py::arg("config"))
      .def("run", &run_engine<CpuEngine>, py::arg("x"), py::arg("sample_offset"),
           py::arg("counts"), py::arg("first_spike"), py::arg("spike_counts"), py::arg("synops"),
           py::arg("stop_step"), py::arg("num_threads"));

#ifdef TTFS_WITH_CUDA
  py::class_<CudaEngine>(m, "CudaEngine")
      .def(py::init<const Network&, const SimConfig&>(), py::arg("network"), py::arg("config"))
      .def("run", &run_engine<CudaEngine>, py::arg("x"), py::arg("sample_offset"),
           py::arg("counts"), py::arg("first_spike"), py::arg("spike_counts"), py::arg("synops"),
           py::arg("stop_step"), py::arg("num_threads"));
  m.def("cuda_device_status", &cuda_device_status,
        "(usable, reason): whether a CUDA device can run this build's kernels. Never raises.");
#else
  m.def("cuda_device_status", [] { return std::make_pair(false, std::string("built without CUDA")); },
        "(usable, reason): this build has no CUDA backend.");
#endif

  m.def("softmax_uniform", &softmax_uniform, py::arg("seed"), py::arg("neuron"),
        py::arg("sample"), py::arg("step"),
        "The uniform number the softmax output draws (Philox4x32-10), for tests.");
  m.def("openmp_enabled", &openmp_enabled);
  m.def("max_threads", &max_threads);
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
