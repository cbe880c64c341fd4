// The network as plan.py hands it over: NodeKind, Geometry (named fields),
// one add_node per node, checked by validate_node; and the run semantics
// (SimConfig).
#include "../core/network.h"
#include "../core/sim_config.h"
#include "bindings.h"

namespace ttfs {
namespace bindings {

namespace {

template <typename T>
std::vector<T> to_vector(const CArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

void add_node(Network& net, NodeKind kind, const std::string& name, const std::vector<int>& inbound,
              const Geometry& geometry, int64_t size, bool softmax, const CArray<float>& kernel,
              const CArray<float>& bias, const CArray<float>& pool_count, const CArray<int32_t>& gather_input,
              const CArray<int64_t>& gather_element, const CArray<double>& fanout, bool open) {
  Node node;
  node.kind = kind;
  node.name = name;
  node.inbound = inbound;
  node.geom = geometry;
  node.size = size;
  node.softmax = softmax;
  node.kernel = to_vector(kernel);
  node.bias = to_vector(bias);
  node.pool_count = to_vector(pool_count);
  node.gather_input = to_vector(gather_input);
  node.gather_element = to_vector(gather_element);
  node.fanout = to_vector(fanout);
  node.open = open;
  validate_node(net, node);  // throws std::invalid_argument -> ValueError
  net.nodes.push_back(std::move(node));
}

}  // namespace

void bind_network(py::module_& m) {
  py::enum_<NodeKind>(m, "NodeKind", "What a node of the network is (csrc/core/network.h).")
      .value("Input", NodeKind::Input)
      .value("Dense", NodeKind::Dense)
      .value("Conv2D", NodeKind::Conv2D)
      .value("DepthwiseConv2D", NodeKind::DepthwiseConv2D)
      .value("AveragePooling2D", NodeKind::AveragePooling2D)
      .value("MaxPooling2D", NodeKind::MaxPooling2D)
      .value("Gather", NodeKind::Gather)
      .value("Add", NodeKind::Add);

  const Geometry d{};  // the defaults: one cell, one channel, a 1x1 window
  py::class_<Geometry>(m, "Geometry",
                       "Channels-last geometry of a layer with one input; Dense acts on the last axis "
                       "(in_h * in_w positions of in_c features). multiplier: Dense units, Conv2D "
                       "filters, DepthwiseConv2D depth multiplier.")
      .def(py::init([](int in_h, int in_w, int in_c, int out_h, int out_w, int out_c, int kernel_h,
                       int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top,
                       int pad_left, int multiplier) {
             return Geometry{in_h,     in_w,     in_c,       out_h,      out_w,   out_c,    kernel_h,  kernel_w,
                             stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, multiplier};
           }),
           py::kw_only(), py::arg("in_h") = d.in_h, py::arg("in_w") = d.in_w, py::arg("in_c") = d.in_c,
           py::arg("out_h") = d.out_h, py::arg("out_w") = d.out_w, py::arg("out_c") = d.out_c,
           py::arg("kernel_h") = d.kernel_h, py::arg("kernel_w") = d.kernel_w, py::arg("stride_h") = d.stride_h,
           py::arg("stride_w") = d.stride_w, py::arg("dilation_h") = d.dilation_h,
           py::arg("dilation_w") = d.dilation_w, py::arg("pad_top") = d.pad_top, py::arg("pad_left") = d.pad_left,
           py::arg("multiplier") = d.multiplier)
      .def_readwrite("in_h", &Geometry::in_h)
      .def_readwrite("in_w", &Geometry::in_w)
      .def_readwrite("in_c", &Geometry::in_c)
      .def_readwrite("out_h", &Geometry::out_h)
      .def_readwrite("out_w", &Geometry::out_w)
      .def_readwrite("out_c", &Geometry::out_c)
      .def_readwrite("kernel_h", &Geometry::kernel_h)
      .def_readwrite("kernel_w", &Geometry::kernel_w)
      .def_readwrite("stride_h", &Geometry::stride_h)
      .def_readwrite("stride_w", &Geometry::stride_w)
      .def_readwrite("dilation_h", &Geometry::dilation_h)
      .def_readwrite("dilation_w", &Geometry::dilation_w)
      .def_readwrite("pad_top", &Geometry::pad_top)
      .def_readwrite("pad_left", &Geometry::pad_left)
      .def_readwrite("multiplier", &Geometry::multiplier)
      .def("__repr__", [](const Geometry& g) {
        const std::pair<const char*, int> fields[] = {
            {"in_h", g.in_h},         {"in_w", g.in_w},         {"in_c", g.in_c},         {"out_h", g.out_h},
            {"out_w", g.out_w},       {"out_c", g.out_c},       {"kernel_h", g.kernel_h}, {"kernel_w", g.kernel_w},
            {"stride_h", g.stride_h}, {"stride_w", g.stride_w}, {"dilation_h", g.dilation_h},
            {"dilation_w", g.dilation_w}, {"pad_top", g.pad_top}, {"pad_left", g.pad_left},
            {"multiplier", g.multiplier}};
        std::string s = "Geometry(";
        for (size_t f = 0; f < std::size(fields); ++f)
          s += (f ? ", " : "") + std::string(fields[f].first) + "=" + std::to_string(fields[f].second);
        return s + ")";
      });

  py::class_<Network>(m, "Network")
      .def(py::init<>())
      .def("add_node", &add_node, py::arg("kind"), py::arg("name"), py::arg("inbound"), py::arg("geometry"),
           py::arg("size"), py::arg("softmax"), py::arg("kernel"), py::arg("bias"), py::arg("pool_count"),
           py::arg("gather_input"), py::arg("gather_element"), py::arg("fanout"), py::kw_only(),
           py::arg("open") = false,
           "Appends a node (checked by validate_node). open: a synapse group of the Add that reads it.")
      .def("set_window",
           [](Network& net, int index, int start, int ref, const CArray<float>& theta, const CArray<float>& weight,
              const std::vector<int>& delay) {
             set_window(net, index, WindowNode{start, ref, to_vector(theta), to_vector(weight), delay});
           },
           py::arg("index"), py::arg("start"), py::arg("ref"), py::arg("theta"), py::arg("weight"),
           py::arg("delay"),
           "The window coding's constants of node `index` (core/network.h WindowNode).")
      .def_property_readonly("num_nodes", [](const Network& n) { return n.nodes.size(); })
      .def_property_readonly("num_classes", &Network::num_classes);

  py::enum_<Coding>(m, "Coding", "The coding a run simulates (csrc/core/sim_config.h).")
      .value("dyn_thresh", Coding::DynThresh)
      .value("window", Coding::Window);

  py::class_<WindowConfig>(m, "WindowConfig",
                           "Run-wide constants of the window coding (docs/WINDOW_SEMANTICS.md): input_steps "
                           "S_0, input_gain f64(S_0) / f64(X_0), signed_input, zero_spikes, read_step R_out.")
      .def(py::init([](int input_steps, double input_gain, bool signed_input, bool zero_spikes, int read_step) {
             if (input_steps < 1 || !(input_gain > 0.0) || read_step < 1)
               throw py::value_error("WindowConfig: input_steps and read_step must be >= 1, input_gain > 0");
             return WindowConfig{input_steps, input_gain, signed_input, zero_spikes, read_step};
           }),
           py::kw_only(), py::arg("input_steps"), py::arg("input_gain"), py::arg("signed_input"),
           py::arg("zero_spikes"), py::arg("read_step"))
      .def_readonly("input_steps", &WindowConfig::input_steps)
      .def_readonly("input_gain", &WindowConfig::input_gain)
      .def_readonly("read_step", &WindowConfig::read_step);

  py::class_<SimConfig>(m, "SimConfig", "Run semantics (validated by SimParams in Python).")
      .def(py::init([](int steps, float dt, float v_thresh, float tau_refrac, bool leak, uint64_t seed,
                       bool early_stop, bool record_spike_times, Coding coding, const WindowConfig& window) {
             if (steps < 1) throw py::value_error("steps must be >= 1");
             return SimConfig{steps, dt, v_thresh, tau_refrac, leak, seed, early_stop, record_spike_times,
                              coding, window};
           }),
           py::arg("steps"), py::arg("dt"), py::arg("v_thresh"), py::arg("tau_refrac"), py::arg("leak"),
           py::arg("seed"), py::arg("early_stop"), py::arg("record_spike_times") = true,
           py::arg("coding") = Coding::DynThresh, py::arg("window") = WindowConfig{})
      .def_readonly("coding", &SimConfig::coding);
}

}  // namespace bindings
}  // namespace ttfs
