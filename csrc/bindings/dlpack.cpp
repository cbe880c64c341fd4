// DLPack in both directions: DLPackInput (device input read in place by the
// CUDA engine) and DeviceArray (first-spike times left on the GPU).
#include "bindings.h"

namespace ttfs {
namespace bindings {

DLPackInput::DLPackInput(const py::capsule& capsule) {
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

void DLPackInput::close() {
  if (tensor_ && tensor_->deleter) tensor_->deleter(tensor_);
  tensor_ = nullptr;
}

const dlpack::Tensor& DLPackInput::tensor() const {
  if (!tensor_) throw py::value_error("DLPack input already closed");
  return tensor_->dl_tensor;
}

std::vector<int64_t> DLPackInput::shape() const {
  const dlpack::Tensor& t = tensor();
  return std::vector<int64_t>(t.shape, t.shape + t.ndim);
}

bool DLPackInput::on_cuda_device() const {
  const int type = tensor().device.device_type;
  return type == dlpack::kCUDA || type == dlpack::kCUDAManaged;
}

std::string DLPackInput::dtype() const {
  const dlpack::DataType d = tensor().dtype;
  static const char* names[] = {"int", "uint", "float"};
  std::string s = d.code <= dlpack::kFloat ? std::string(names[d.code]) + std::to_string(d.bits)
                                           : "code" + std::to_string(d.code) + "_" + std::to_string(d.bits);
  return d.lanes == 1 ? s : s + "x" + std::to_string(d.lanes);
}

bool DLPackInput::c_contiguous() const {
  const dlpack::Tensor& t = tensor();
  if (!t.strides) return true;
  int64_t expected = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expected) return false;
    expected *= t.shape[d];
  }
  return true;
}

uintptr_t DLPackInput::data() const {
  const dlpack::Tensor& t = tensor();
  return reinterpret_cast<uintptr_t>(t.data) + uintptr_t(t.byte_offset);
}

namespace {
py::tuple as_tuple(const std::vector<int64_t>& dims) {
  py::tuple t(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) t[i] = dims[i];
  return t;
}
}  // namespace

#ifdef TTFS_WITH_CUDA
DeviceArray::DeviceArray(std::vector<int64_t> dims, int device) : shape(std::move(dims)) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw py::value_error("DeviceArray: negative dimension");
    n *= d;
  }
  memory = std::make_shared<DeviceMemory>(size_t(n) * sizeof(float), device);
}

py::array_t<float> DeviceArray::numpy() const {
  py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  memory->copy_to_host(out.mutable_data(), size_t(size()) * sizeof(float));
  return out;
}

py::capsule DeviceArray::dlpack() const {
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

namespace {
// The consumer's stream of __dlpack__ (the array API's convention for CUDA):
// None or 1 the legacy default stream, 2 the per-thread default stream, -1
// no synchronisation, above 2 a cudaStream_t; 0 is ambiguous and refused.
// Every write into a DeviceArray (from_numpy, a run's first-spike times) is
// complete when the call that made it returns, so no stream has to wait:
// the data are ready on any stream the consumer names.
void check_consumer_stream(const py::object& stream) {
  if (stream.is_none()) return;
  if (!py::isinstance<py::int_>(stream) || py::isinstance<py::bool_>(stream))
    throw py::type_error("DeviceArray.__dlpack__: stream must be an integer or None, got " +
                         std::string(py::str(py::type::of(stream).attr("__name__"))));
  const long long s = stream.cast<long long>();
  if (s == 0 || s < -1)
    throw py::value_error("DeviceArray.__dlpack__: stream " + std::to_string(s) +
                          " is not a CUDA stream (None or 1: legacy default, 2: per-thread default, "
                          "-1: no synchronisation, or a cudaStream_t handle)");
}
}  // namespace
#endif

void bind_dlpack(py::module_& m) {
  py::class_<DLPackInput>(m, "DLPackInput",
                          "Owns the tensor of a DLPack capsule (consumed on construction) until close().")
      .def(py::init<const py::capsule&>(), py::arg("capsule"))
      .def_property_readonly("shape", [](const DLPackInput& d) { return as_tuple(d.shape()); })
      .def_property_readonly("dtype", &DLPackInput::dtype)
      .def_property_readonly("device", &DLPackInput::device)
      .def_property_readonly("c_contiguous", &DLPackInput::c_contiguous)
      .def_property_readonly("data_ptr", &DLPackInput::data)
      .def("close", &DLPackInput::close)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](DLPackInput& d, py::args) { d.close(); });

#ifdef TTFS_WITH_CUDA
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
      .def_property_readonly("shape", [](const DeviceArray& a) { return as_tuple(a.shape); })
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
      .def("__dlpack__", [](const DeviceArray& a, py::object stream, py::object /*max_version*/,
                            py::object dl_device, py::object copy) {
             check_consumer_stream(stream);
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
}

}  // namespace bindings
}  // namespace ttfs
