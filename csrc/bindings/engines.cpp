// The engines behind one interface: EngineOptions, Input (host or device
// memory, a property of the input), Results (the arrays a run writes), and
// Engine.run(inputs, results), answered by CpuEngine and CudaEngine alike.
#include "../core/engine.h"
#include "../cpu/engine_cpu.h"
#include "bindings.h"

namespace ttfs {
namespace bindings {

namespace {

// Input as Python holds it: the view and what keeps its memory alive.
struct PyInput {
  Input view;
  int64_t row_size = 0;      // floats per sample
  py::object owner;          // the numpy array or the DLPackInput
  py::object array;          // host input: the numpy rows; None for device memory

  // From a (samples, ...) float32 numpy array or a DLPackInput.
  static PyInput make(py::object x, int64_t sample_offset, int64_t stream_offset) {
    if (sample_offset < 0) throw py::value_error("Input: sample_offset must be >= 0");
    if (stream_offset < 0) throw py::value_error("Input: stream_offset must be >= 0");
    PyInput in;
    in.view.sample_offset = sample_offset;
    in.view.stream_offset = stream_offset;
    if (py::isinstance<DLPackInput>(x)) {
      const DLPackInput& d = x.cast<const DLPackInput&>();
      const std::vector<int64_t> shape = d.shape();
      if (shape.empty() || d.dtype() != "float32" || !d.c_contiguous())
        throw py::value_error("Input: a DLPack input must be C-contiguous float32 of shape (samples, ...)");
      in.row_size = 1;
      for (size_t k = 1; k < shape.size(); ++k) in.row_size *= shape[k];
      in.view.samples = shape[0];
      in.view.data = reinterpret_cast<const float*>(d.data());
      in.view.on_device = d.on_cuda_device();
      in.view.device = in.view.on_device ? d.device().second : -1;
      in.owner = x;
      in.array = py::none();
      return in;
    }
    auto a = py::array_t<float, py::array::c_style>::ensure(x);
    if (!a || a.ndim() < 1)
      throw py::value_error("Input: expected a float32 array of shape (samples, ...) or a DLPackInput");
    in.view.samples = a.shape(0);
    in.row_size = 1;
    for (py::ssize_t k = 1; k < a.ndim(); ++k) in.row_size *= a.shape(k);
    in.view.data = a.data();
    in.owner = a;
    in.array = a;
    return in;
  }

  PyInput rows(int64_t lo, int64_t hi) const {
    if (lo < 0 || hi < lo || hi > view.samples)
      throw py::value_error("Input.rows: [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            ") is not within the " + std::to_string(view.samples) + " samples");
    PyInput part = *this;
    part.view.data = view.data + lo * row_size;
    part.view.samples = hi - lo;
    part.view.sample_offset = view.sample_offset + lo;
    if (!array.is_none()) part.array = array[py::slice(lo, hi, 1)];
    return part;
  }
};

// The arrays a run writes, one row per sample of the whole input.
struct PyResults {
  OutArray<int32_t> counts;
  py::list first_spike;  // numpy float32 arrays, or DeviceArrays (CUDA builds)
  OutArray<int64_t> spike_counts;
  OutArray<double> synops;
  OutArray<int32_t> stop_step;
  py::object output_membrane;  // None, or (rows, classes) float32 (the window coding's read-out)

  // The views for `engine`, checked against its network.
  Results views(const Engine& engine) const {
    const Network& net = engine.network();
    const int steps = engine.config().steps;
    const std::vector<int> spiking = net.spiking_nodes();
    const int64_t rows = stop_step.ndim() == 1 ? stop_step.shape(0) : -1;
    Results out;
    out.rows = rows;
    out.counts = checked(counts, {rows, net.num_classes(), steps}, "counts");
    out.spike_counts = checked(spike_counts, {rows, int64_t(spiking.size())}, "spike_counts");
    out.synops = checked(synops, {rows, steps}, "synops");
    out.stop_step = checked(stop_step, {rows}, "stop_step");
    if (!output_membrane.is_none()) {
      if (engine.config().coding != Coding::Window)
        throw py::value_error("Results.output_membrane: only the window coding reads an output membrane");
      auto a = output_membrane.cast<OutArray<float>>();
      out.output_membrane = checked(a, {rows, net.num_classes()}, "output_membrane");
    }
    if (py::len(first_spike) != 0 && py::len(first_spike) != spiking.size())
      throw py::value_error("Results.first_spike: one array per spiking layer, or none");
    for (size_t l = 0; l < size_t(py::len(first_spike)); ++l) {
      const int64_t size = net.nodes[spiking[l]].size;
      py::handle item = first_spike[l];
#ifdef TTFS_WITH_CUDA
      if (py::isinstance<DeviceArray>(item)) {
        const DeviceArray& a = item.cast<const DeviceArray&>();
        if (a.shape.empty() || a.shape[0] != rows || a.size() != rows * size)
          throw py::value_error("Results.first_spike: DeviceArrays of (rows, *layer shape)");
        if (l > 0 && (!out.first_spike_on_device || a.memory->device() != out.device))
          throw py::value_error("Results.first_spike: all in host memory or all on one device");
        out.first_spike_on_device = true;
        out.device = a.memory->device();
        out.first_spike.push_back(a.data());
        continue;
      }
#endif
      if (out.first_spike_on_device)
        throw py::value_error("Results.first_spike: all in host memory or all on one device");
      auto a = py::reinterpret_borrow<py::object>(item).cast<OutArray<float>>();
      out.first_spike.push_back(checked(a, {rows, size}, "first_spike"));
    }
    return out;
  }

  template <typename T>
  static T* checked(const OutArray<T>& a, std::vector<int64_t> shape, const char* what) {
    if (a.ndim() != py::ssize_t(shape.size()))
      throw py::value_error(std::string("Results.") + what + ": wrong rank");
    for (size_t d = 0; d < shape.size(); ++d)
      if (a.shape(d) != shape[d]) throw py::value_error(std::string("Results.") + what + ": wrong shape");
    if (!a.writeable()) throw py::value_error(std::string("Results.") + what + ": not writeable");
    return const_cast<T*>(a.data());
  }
};

void run(const Engine& engine, const PyInput& in, const PyResults& results) {
  if (in.row_size != engine.network().nodes[0].size)
    throw py::value_error("Input: " + std::to_string(in.row_size) + " values per sample, the network takes " +
                          std::to_string(engine.network().nodes[0].size));
  const Results out = results.views(engine);
  py::gil_scoped_release release;
  engine.run(in.view, out);
}

}  // namespace

void bind_engines(py::module_& m) {
  py::enum_<CpuShare>(m, "CpuShare").value("auto", CpuShare::Auto).value("all", CpuShare::All);
  py::enum_<CpuKernels>(m, "CpuKernels")
      .value("auto", CpuKernels::Auto)
      .value("generic", CpuKernels::Generic)
      .value("avx2", CpuKernels::Avx2);
  py::enum_<CpuSums>(m, "CpuSums").value("float64", CpuSums::Float64).value("float32", CpuSums::Float32);
  py::enum_<CudaSchedule>(m, "CudaSchedule").value("step", CudaSchedule::Step).value("layer", CudaSchedule::Layer);
  py::enum_<CudaSynapses>(m, "CudaSynapses")
      .value("events", CudaSynapses::Events)
      .value("gather", CudaSynapses::Gather);

  py::class_<EngineOptions>(m, "EngineOptions",
                            "How an engine computes (core/engine.h); made and validated by "
                            "ttfs_native.simulation.options.EngineOptions.")
      .def(py::init<>())
      .def_readwrite("cpu_share", &EngineOptions::cpu_share)
      .def_readwrite("cpu_kernels", &EngineOptions::cpu_kernels)
      .def_readwrite("cpu_sums", &EngineOptions::cpu_sums)
      .def_readwrite("cpu_threads", &EngineOptions::cpu_threads)
      .def_readwrite("cuda_schedule", &EngineOptions::cuda_schedule)
      .def_readwrite("cuda_synapses", &EngineOptions::cuda_synapses)
      .def_readwrite("cuda_window", &EngineOptions::cuda_window)
      .def_readwrite("cuda_profile", &EngineOptions::cuda_profile)
      .def_readwrite("cuda_memory_limit", &EngineOptions::cuda_memory_limit);

  py::class_<PyInput>(m, "Input",
                      "The samples of a run: a (samples, ...) float32 numpy array in host memory, or a "
                      "DLPackInput (read in place where it lives). sample_offset: the index of its first "
                      "sample in the whole input, which is also its row in the results. stream_offset: added to a "
                      "sample's index for its softmax draws only (a part of a larger input simulated on its "
                      "own draws as in the whole).")
      .def(py::init(&PyInput::make), py::arg("x"), py::arg("sample_offset") = 0, py::arg("stream_offset") = 0)
      .def("rows", &PyInput::rows, py::arg("lo"), py::arg("hi"), "Samples lo..hi as an Input of their own.")
      .def_property_readonly("samples", [](const PyInput& in) { return in.view.samples; })
      .def_property_readonly("sample_offset", [](const PyInput& in) { return in.view.sample_offset; })
      .def_property_readonly("stream_offset", [](const PyInput& in) { return in.view.stream_offset; })
      .def_property_readonly("on_device", [](const PyInput& in) { return in.view.on_device; })
      .def_property_readonly("device", [](const PyInput& in) { return in.view.device; })
      .def_property_readonly("array", [](const PyInput& in) { return in.array; },
                             "The numpy rows of host input (None for a DLPack input).");

  py::class_<PyResults>(m, "Results",
                        "The arrays a run writes, one row per sample of the whole input: counts (rows, "
                        "classes, steps) int32, first_spike (one (rows, size) float32 array or DeviceArray "
                        "per spiking layer, or none), spike_counts (rows, layers) int64, synops (rows, "
                        "steps) float64, stop_step (rows,) int32, output_membrane (rows, classes) float32 or None (the "
                        "window coding's read-out values).")
      .def(py::init([](OutArray<int32_t> counts, py::list first_spike, OutArray<int64_t> spike_counts,
                       OutArray<double> synops, OutArray<int32_t> stop_step, py::object output_membrane) {
             return PyResults{counts, first_spike, spike_counts, synops, stop_step, output_membrane};
           }),
           py::arg("counts"), py::arg("first_spike"), py::arg("spike_counts"), py::arg("synops"),
           py::arg("stop_step"), py::arg("output_membrane") = py::none())
      .def_readonly("counts", &PyResults::counts)
      .def_readonly("first_spike", &PyResults::first_spike)
      .def_readonly("spike_counts", &PyResults::spike_counts)
      .def_readonly("synops", &PyResults::synops)
      .def_readonly("stop_step", &PyResults::stop_step)
      .def_readonly("output_membrane", &PyResults::output_membrane);

  py::class_<Engine>(m, "Engine", "A native engine: run(inputs, results) writes the rows of `inputs`.")
      .def("run", &run, py::arg("inputs"), py::arg("results"))
      .def_property_readonly("options", [](const Engine& e) { return e.options(); });

  py::class_<CpuEngine, Engine>(m, "CpuEngine")
      .def(py::init<const Network&, const SimConfig&, const EngineOptions&>(), py::arg("network"),
           py::arg("config"), py::arg("options"))
      .def_property_readonly("kernels", &CpuEngine::kernels, "The CPU kernels it runs: 'avx2' or 'generic'.");

#ifdef TTFS_WITH_CUDA
  py::class_<CudaEngine, Engine>(m, "CudaEngine")
      .def(py::init<const Network&, const SimConfig&, const EngineOptions&>(), py::arg("network"),
           py::arg("config"), py::arg("options"))
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
                             "The time loop: 'step', or 'layer' (cuda_schedule='layer', where supported).")
      .def_property_readonly("window_steps", &CudaEngine::window_steps,
                             "Layer-major loop: steps per window (cuda_window); 0 for the step loop.")
      .def_property_readonly("stream_handle", &CudaEngine::stream_handle);
#endif

  m.def("openmp_enabled", &openmp_enabled);
  m.def("cpu_kernels", &cpu_kernels, py::arg("requested") = CpuKernels::Auto,
        "The CPU kernels `requested` resolves to on this CPU: 'avx2' or 'generic'.");
  m.def("max_threads", &max_threads);
}

}  // namespace bindings
}  // namespace ttfs
