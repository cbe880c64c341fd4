// Python bindings: the network description, the CPU and CUDA engines and build facts.
// Long native calls release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/network.h"
#include "core/philox.h"
#include "cpu/engine_cpu.h"
#include "dlpack_abi.h"
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
  node.bias = to_vector(bias);
  node.pool_count = to_vector(pool_count);
  node.gather_input = to_vector(gather_input);
  node.gather_element = to_vector(gather_element);
  node.fanout = to_vector(fanout);
  validate_node(net, node);  // throws std::invalid_argument -> ValueError
  net.nodes.push_back(std::move(node));
}

// The host result arrays of a run of n samples, checked against the network.
ResultViews result_views(const Network& net, const SimConfig& cfg, int64_t n,
                         py::array_t<int32_t, py::array::c_style>& counts, py::list first_spike,
                         py::array_t<int64_t, py::array::c_style>& spike_counts,
                         py::array_t<double, py::array::c_style>& synops,
                         py::array_t<int32_t, py::array::c_style>& stop_step) {
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
  return out;
}

template <typename Engine>
void run_engine(const Engine& engine, py::array_t<float, py::array::c_style> x, int64_t sample_offset,
                py::array_t<int32_t, py::array::c_style> counts, py::list first_spike,
                py::array_t<int64_t, py::array::c_style> spike_counts,
                py::array_t<double, py::array::c_style> synops,
                py::array_t<int32_t, py::array::c_style> stop_step, int num_threads) {
  const Network& net = engine.network();
  if (x.ndim() != 2 || x.shape(1) != net.nodes[0].size)
    throw py::value_error("x must be (samples, input size) float32");
  const int64_t n = x.shape(0);
  const ResultViews out =
      result_views(net, engine.config(), n, counts, first_spike, spike_counts, synops, stop_step);
  const float* xp = x.data();
  py::gil_scoped_release release;
  engine.run(xp, n, sample_offset, out, num_threads);
}

// An array received through DLPack: takes ownership of the capsule's tensor
// (renaming the capsule "used_dltensor") and calls its deleter on close() or
// destruction. Describes it for the checks in Python; the CUDA engine reads
// `data` in place.
class DLPackInput {
 public:
  explicit DLPackInput(const py::capsule& capsule) {
    const char* name = capsule.name();
    if (!name || std::strcmp(name, dlpack::kCapsuleName) != 0)
      throw py::value_error(std::string("expected an unconsumed DLPack capsule named 'dltensor', got '") +
                            (name ? name : "") + "'");
    tensor_ = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), dlpack::kCapsuleName));
    if (!tensor_) throw py::error_already_set();
    if (PyCapsule_SetName(capsule.ptr(), dlpack::kUsedCapsuleName) != 0) throw py::error_already_set();
    const dlpack::Tensor& t = tensor_->dl_tensor;
    if (t.ndim < 0 || (t.ndim > 0 && !t.shape)) {
      close();
      throw py::value_error("DLPack tensor with an invalid shape");
    }
  }
  ~DLPackInput() { close(); }
  DLPackInput(const DLPackInput&) = delete;
  DLPackInput& operator=(const DLPackInput&) = delete;

  void close() {
    if (tensor_ && tensor_->deleter) tensor_->deleter(tensor_);
    tensor_ = nullptr;
  }
  const dlpack::Tensor& tensor() const {
    if (!tensor_) throw py::value_error("DLPack input already closed");
    return tensor_->dl_tensor;
  }
  std::vector<int64_t> shape() const {
    const dlpack::Tensor& t = tensor();
    return std::vector<int64_t>(t.shape, t.shape + t.ndim);
  }
  std::pair<int, int> device() const { return {tensor().device.device_type, tensor().device.device_id}; }
  // "float32", "int64", ...; "code<c>" for other type codes; "x<lanes>" if vectorised
  std::string dtype() const {
    const dlpack::DataType d = tensor().dtype;
    static const char* names[] = {"int", "uint", "float"};
    std::string s = d.code <= dlpack::kFloat ? std::string(names[d.code]) + std::to_string(d.bits)
                                             : "code" + std::to_string(d.code) + "_" + std::to_string(d.bits);
    return d.lanes == 1 ? s : s + "x" + std::to_string(d.lanes);
  }
  bool c_contiguous() const {
    const dlpack::Tensor& t = tensor();
    if (!t.strides) return true;
    int64_t expected = 1;
    for (int d = t.ndim - 1; d >= 0; --d) {
      if (t.shape[d] != 1 && t.strides[d] != expected) return false;
      expected *= t.shape[d];
    }
    return true;
  }
  uintptr_t data() const {
    const dlpack::Tensor& t = tensor();
    return reinterpret_cast<uintptr_t>(t.data) + uintptr_t(t.byte_offset);
  }

 private:
  dlpack::ManagedTensor* tensor_ = nullptr;
};

#ifdef TTFS_WITH_CUDA
// float32 device memory handed to Python: a DLPack producer (zero-copy into
// PyTorch, CuPy, JAX via their from_dlpack), copied to the host by numpy().
struct DeviceArray {
  std::shared_ptr<DeviceMemory> memory;
  std::vector<int64_t> shape;

  DeviceArray(std::vector<int64_t> dims, int device) : shape(std::move(dims)) {
    int64_t n = 1;
    for (int64_t d : shape) {
      if (d < 0) throw py::value_error("DeviceArray: negative dimension");
      n *= d;
    }
    memory = std::make_shared<DeviceMemory>(size_t(n) * sizeof(float), device);
  }
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  float* data() const { return static_cast<float*>(memory->data()); }

  py::array_t<float> numpy() const {
    py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    memory->copy_to_host(out.mutable_data(), size_t(size()) * sizeof(float));
    return out;
  }

  // The capsule of __dlpack__: its tensor keeps the memory alive until the
  // consumer calls the deleter (or, unconsumed, the capsule is destroyed).
  py::capsule dlpack() const {
    struct Context {
      std::shared_ptr<DeviceMemory> memory;
      std::vector<int64_t> shape;
      dlpack::ManagedTensor tensor;
    };
    auto* ctx = new Context{memory, shape, {}};
    ctx->tensor.dl_tensor = dlpack::Tensor{memory->data(),
                                           {dlpack::kCUDA, memory->device()},
                                           int32_t(ctx->shape.size()),
                                           {dlpack::kFloat, 32, 1},
                                           ctx->shape.data(),
                                           nullptr,
                                           0};
    ctx->tensor.manager_ctx = ctx;
    ctx->tensor.deleter = [](dlpack::ManagedTensor* self) { delete static_cast<Context*>(self->manager_ctx); };
    PyObject* capsule = PyCapsule_New(&ctx->tensor, dlpack::kCapsuleName, [](PyObject* cap) {
      if (!PyCapsule_IsValid(cap, dlpack::kCapsuleName)) return;  // consumed: the consumer deletes
      auto* t = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(cap, dlpack::kCapsuleName));
      if (t && t->deleter) t->deleter(t);
    });
    if (!capsule) {
      delete ctx;
      throw py::error_already_set();
    }
    return py::reinterpret_steal<py::capsule>(capsule);
  }
};

// CudaEngine.run_cuda: input in host memory (x) or on the device (x_ptr),
// first-spike times to host arrays or to DeviceArrays from row `device_row` on.
void run_cuda(const CudaEngine& engine, py::object x, uintptr_t x_ptr, int64_t samples, int64_t sample_offset,
              py::array_t<int32_t, py::array::c_style> counts, py::list first_spike,
              py::list first_spike_device, int64_t device_row,
              py::array_t<int64_t, py::array::c_style> spike_counts,
              py::array_t<double, py::array::c_style> synops,
              py::array_t<int32_t, py::array::c_style> stop_step) {
  const Network& net = engine.network();
  const int64_t n = samples, in_size = net.nodes[0].size;
  const std::vector<int> spiking = net.spiking_nodes();
  py::array_t<float, py::array::c_style> host_x;
  const float* xp = reinterpret_cast<const float*>(x_ptr);
  if (!x.is_none()) {
    host_x = x.cast<py::array_t<float, py::array::c_style>>();
    if (host_x.ndim() != 2 || host_x.shape(0) != n || host_x.shape(1) != in_size)
      throw py::value_error("x must be (samples, input size) float32");
    xp = host_x.data();
  } else if (!xp) {
    throw py::value_error("run_cuda: give x or x_ptr");
  }
  if (py::len(first_spike) && py::len(first_spike_device))
    throw py::value_error("first-spike times go to the host or to the device, not both");
  ResultViews out = result_views(net, engine.config(), n, counts, first_spike, spike_counts, synops, stop_step);
  for (size_t l = 0; l < size_t(py::len(first_spike_device)); ++l) {
    const DeviceArray& a = first_spike_device[l].cast<const DeviceArray&>();
    const int64_t size = net.nodes[spiking[l]].size;  // a row: (rows, *layer shape)
    if (a.shape.empty() || a.shape[0] * size != a.size() || device_row < 0 || device_row + n > a.shape[0])
      throw py::value_error("first_spike_device: arrays of (rows, *layer shape) with room for the samples");
    if (a.memory->device() != engine.device())
      throw py::value_error("first_spike_device: arrays on another device than the engine");
    out.first_spike.push_back(a.data() + device_row * size);
  }
  out.first_spike_on_device = py::len(first_spike_device) > 0;
  const bool on_device = x.is_none();
  py::gil_scoped_release release;
  engine.run(xp, n, sample_offset, out, 0, on_device);
}
#endif

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
                       uint64_t seed, bool early_stop, bool record_spike_times, uint64_t device_memory_limit) {
             if (steps < 1) throw py::value_error("steps must be >= 1");
             SimConfig c;
             c.steps = steps;
             c.dt = dt;
             c.v_thresh = v_thresh;
             c.tau_refrac = tau_refrac;
             c.leak = leak;
             c.seed = seed;
             c.early_stop = early_stop;
             c.record_spike_times = record_spike_times;
             c.device_memory_limit = device_memory_limit;
             return c;
           }),
           py::arg("steps"), py::arg("dt"), py::arg("v_thresh"), py::arg("tau_refrac"),
           py::arg("leak"), py::arg("seed"), py::arg("early_stop"), py::arg("record_spike_times") = true,
           py::arg("device_memory_limit") = 0);

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
           py::arg("stop_step"), py::arg("num_threads"))
      .def("run_cuda", &run_cuda, py::arg("x"), py::arg("x_ptr"), py::arg("samples"),
           py::arg("sample_offset"), py::arg("counts"), py::arg("first_spike"),
           py::arg("first_spike_device"), py::arg("device_row"), py::arg("spike_counts"),
           py::arg("synops"), py::arg("stop_step"))
      .def("all_finite", [](const CudaEngine& e, uintptr_t x, int64_t count) {
             py::gil_scoped_release release;
             return e.all_finite(reinterpret_cast<const float*>(x), count);
           }, py::arg("x_ptr"), py::arg("count"), "Whether `count` floats of device memory are all finite.")
      .def_property_readonly("device", &CudaEngine::device)
      .def_property_readonly("bytes_per_sample", &CudaEngine::bytes_per_sample,
                             "Device memory one sample of a chunk takes (buffers and results).")
      .def_property_readonly("chunk_capacity", &CudaEngine::chunk_capacity,
                             "Samples per chunk of the buffers allocated so far (0 before a run).")
      .def_property_readonly("schedule", &CudaEngine::schedule,
                             "The time loop: 'step', or 'layer' (TTFS_CUDA_SCHEDULE=layer, where supported).")
      .def_property_readonly("window_steps", &CudaEngine::window_steps,
                             "Layer-major loop: steps per window (TTFS_CUDA_WINDOW); 0 for the step loop.")
      .def_property_readonly("stream_handle", &CudaEngine::stream_handle);

  py::class_<DeviceArray>(m, "DeviceArray",
                          "float32 array in CUDA device memory. A DLPack producer: torch.from_dlpack(a), "
                          "cupy.from_dlpack(a), jax.dlpack.from_dlpack(a) use it without a copy; "
                          "numpy() or np.asarray(a) copy it to the host.")
      .def(py::init([](std::vector<int64_t> shape, py::object device) {
             return DeviceArray(std::move(shape), device.is_none() ? cuda_current_device() : device.cast<int>());
           }),
           py::arg("shape"), py::arg("device") = py::none(), "Uninitialised device memory.")
      .def_static("from_numpy", [](const CArray<float>& a, py::object device) {
             DeviceArray d(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()),
                           device.is_none() ? cuda_current_device() : device.cast<int>());
             d.memory->copy_from_host(a.data(), size_t(a.size()) * sizeof(float));
             return d;
           }, py::arg("array"), py::arg("device") = py::none(), "A device copy of a host array (as float32).")
      .def_property_readonly("shape", [](const DeviceArray& a) {
             py::tuple t(a.shape.size());
             for (size_t d = 0; d < a.shape.size(); ++d) t[d] = a.shape[d];
             return t;
           })
      .def_property_readonly("dtype", [](const DeviceArray&) { return py::dtype::of<float>(); })
      .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.size(); })
      .def_property_readonly("size", &DeviceArray::size)
      .def_property_readonly("device", [](const DeviceArray& a) { return a.memory->device(); })
      .def_property_readonly("data_ptr", [](const DeviceArray& a) { return reinterpret_cast<uintptr_t>(a.data()); })
      .def("__len__", [](const DeviceArray& a) {
             if (a.shape.empty()) throw py::type_error("len() of a 0-d DeviceArray");
             return a.shape[0];
           })
      .def("numpy", &DeviceArray::numpy, "A host copy (numpy float32).")
      .def("__array__", [](const DeviceArray& a, py::object dtype, py::object /*copy*/) {
             py::array out = a.numpy();
             return dtype.is_none() ? out : py::array(out.attr("astype")(dtype));
           }, py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack__", [](const DeviceArray& a, py::object /*stream*/, py::object /*max_version*/,
                            py::object dl_device, py::object copy) {
             // The data are complete when a run returns: no stream to wait on.
             if (!dl_device.is_none()) {
               auto dev = dl_device.cast<std::pair<int, int>>();
               if (dev.first != dlpack::kCUDA || dev.second != a.memory->device())
                 throw py::buffer_error("DeviceArray: export to another device is not supported");
             }
             if (!copy.is_none() && copy.cast<bool>())
               throw py::buffer_error("DeviceArray: copy=True is not supported");
             return a.dlpack();
           }, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
           py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const DeviceArray& a) {
             return py::make_tuple(int(dlpack::kCUDA), a.memory->device());
           })
      .def("__repr__", [](const DeviceArray& a) {
             std::string dims;
             for (size_t d = 0; d < a.shape.size(); ++d) dims += (d ? ", " : "") + std::to_string(a.shape[d]);
             if (a.shape.size() == 1) dims += ",";
             return "DeviceArray(shape=(" + dims + "), dtype=float32, device=cuda:" +
                    std::to_string(a.memory->device()) + ")";
           });
  m.def("cuda_device_status", &cuda_device_status,
        "(usable, reason): whether a CUDA device can run this build's kernels. Never raises.");
#else
  m.def("cuda_device_status", [] { return std::make_pair(false, std::string("built without CUDA")); },
        "(usable, reason): this build has no CUDA backend.");
#endif

  py::class_<DLPackInput>(m, "DLPackInput",
                          "Owns the tensor of a DLPack capsule (consumed on construction) until close().")
      .def(py::init<const py::capsule&>(), py::arg("capsule"))
      .def_property_readonly("shape", [](const DLPackInput& d) {
             const auto dims = d.shape();
             py::tuple t(dims.size());
             for (size_t i = 0; i < dims.size(); ++i) t[i] = dims[i];
             return t;
           })
      .def_property_readonly("dtype", &DLPackInput::dtype)
      .def_property_readonly("device", &DLPackInput::device)
      .def_property_readonly("c_contiguous", &DLPackInput::c_contiguous)
      .def_property_readonly("data_ptr", &DLPackInput::data)
      .def("close", &DLPackInput::close)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](DLPackInput& d, py::args) { d.close(); });

  m.def("softmax_uniform", &softmax_uniform, py::arg("seed"), py::arg("neuron"),
        py::arg("sample"), py::arg("step"),
        "The uniform number the softmax output draws (Philox4x32-10), for tests.");
  m.def("openmp_enabled", &openmp_enabled);
  m.def("cpu_kernels", &cpu_kernels, "The CPU kernels in use: 'avx2' or 'generic' (TTFS_CPU_KERNELS=generic).");
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
