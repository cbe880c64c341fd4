"""Import an ONNX graph (as torch.onnx.export writes it) into a :class:`Model`.

ONNX tensors are channels-first (N, C, H, W); the model format is
channels-last. Kernels are transposed to Keras layouts, and a flattened
feature map remembers the order of its elements so that the first Dense
layer after it gets its input rows permuted from CHW to HWC order: the
stored network then computes exactly what the original computed.

1-D networks, (N, C, L) tensors (Conv1d, MaxPool1d, AvgPool1d, ...), are
lowered onto the 2-D layers as (1, L, C) maps with (1, k) windows (see
``_graph``); the model input stays (L, C).

Supported operators: Conv (plain and depthwise, 2-D and 1-D), Gemm, MatMul(+Add), Add and
Sum of layer outputs (a residual Add layer), Relu,
BatchNormalization (folded), AveragePool, MaxPool, GlobalAveragePool,
GlobalMaxPool, Flatten, Reshape/Squeeze that flatten, Concat, Pad (zeros),
Softmax (output only), Dropout and Identity (removed), plus constant shape
arithmetic (Constant, Shape, Gather, Unsqueeze, Concat, Cast, Slice, ...).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..model.layers import ModelError, same_padding
from ._graph import GraphBuilder, Tensor, sanitize_name, sample_rank
from ._onnx_constants import BATCH, FOLDABLE, constant_node_value, fold, node_attributes
from ._onnx_files import check_no_external_data, load_onnx
from ._onnx_structural import StructuralOps, onnx_shape

_LAYER_OPS = ("Conv", "Gemm", "MatMul", "Add", "Sum", "Relu", "BatchNormalization", "AveragePool",
              "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Squeeze",
              "Concat", "Pad", "Softmax", "Dropout", "Identity", "Clip", "Resize", "Upsample")
SUPPORTED_OPS = frozenset(_LAYER_OPS + FOLDABLE + ("Constant", "Shape"))
# Activations a time-to-first-spike neuron cannot represent (it encodes ReLU values).
_NON_RELU = ("Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid",
             "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Exp", "Log", "Abs", "Neg")


def _why_unsupported(op: str) -> str:
    if op in _NON_RELU:
        return "an activation other than ReLU: a first spike encodes only non-negative ReLU values"
    if op.startswith(("LSTM", "GRU", "RNN", "Loop", "Scan", "If")):
        return "recurrence or control flow: the model format is a feed-forward graph"
    return "no conversion rule"


def from_onnx(path_or_model, input_shape=None, name_prefix: str = ""):
    """Convert an ONNX file (or a loaded ``onnx.ModelProto``) into a Model.

    External data are read only from files inside the model file's folder
    (see ``_onnx_files``); a ModelProto must have its external data loaded.

    ``input_shape`` is one input sample's shape as the ONNX graph sees it,
    channels-first without the batch axis (e.g. ``(1, 28, 28)``); it is only
    needed when the graph's input has symbolic dimensions besides the batch.
    ``name_prefix`` is put before every layer name.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("from_onnx needs the 'onnx' package: pip install ttfs-native[onnx]") from None
    if isinstance(path_or_model, onnx.ModelProto):
        check_no_external_data(path_or_model)
        proto, source = path_or_model, None
    elif isinstance(path_or_model, (str, os.PathLike)):
        path = Path(path_or_model)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        proto, source = load_onnx(path), path.name
    else:
        raise TypeError(f"from_onnx expects a file path or an onnx.ModelProto, got {type(path_or_model).__name__}")
    if any(not node.name for node in proto.graph.node):
        # Error messages and layer names refer to nodes by name: name the
        # anonymous ones (in a copy, leaving the caller's model untouched).
        named = onnx.ModelProto()
        named.CopyFrom(proto)
        for index, node in enumerate(named.graph.node):
            node.name = node.name or f"{node.op_type}_{index}"
        proto = named
    return _OnnxConverter(proto, input_shape, name_prefix, source).run()


class _OnnxConverter(StructuralOps):
    def __init__(self, proto, input_shape, name_prefix: str, source):
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.user_input_shape = input_shape
        self.static_batch = None  # the input's batch size when the graph fixes it
        self.name_prefix = name_prefix
        from onnx import numpy_helper
        self.constants = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.metadata = {"source": "onnx", "opset": self.opset}
        producer = f"{proto.producer_name} {proto.producer_version}".strip()
        if producer:
            self.metadata["producer"] = producer
        if source:
            self.metadata["file"] = source

    # ----------------------------------------------------------- overview
    def run(self):
        self._check_supported()
        input_name, sample = self._graph_input()
        if len(self.graph.output) != 1:
            raise ModelError(f"the ONNX graph has {len(self.graph.output)} outputs "
                             f"({', '.join(o.name for o in self.graph.output)}); expected one")
        output = self.graph.output[0].name
        # Shape only reads a tensor's dimensions, so it does not keep a ReLU
        # or batch norm from moving back into the layer that produced it.
        consumers = Counter(n for node in self.graph.node if node.op_type != "Shape"
                            for n in node.input if n)
        consumers[output] += 1
        # (C, H, W) -> (H, W, C); 1-D (C, L) -> (L, C)
        neutral = (*sample[1:], sample[0]) if len(sample) > 1 else sample
        self.b = GraphBuilder(input_name, neutral, consumers, "ONNX node", self.name_prefix,
                              input_one_d=len(sample) == 2)
        for index, node in enumerate(self.graph.node):
            self._convert(index, node)
        return self.b.finish(output, self.metadata)

    def _check_supported(self):
        """One error naming every node whose operator has no conversion, and why."""
        unsupported: dict = {}
        for node in self.graph.node:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            if op not in SUPPORTED_OPS:
                unsupported.setdefault(op, []).append(node.name)
        if unsupported:
            listed = "; ".join(f"{op} ({_why_unsupported(op)}): node(s) {', '.join(map(repr, names))}"
                               for op, names in sorted(unsupported.items()))
            count = sum(map(len, unsupported.values()))
            raise ModelError(f"{count} ONNX node(s) cannot be converted: {listed}. Supported operators: "
                             f"{', '.join(sorted(SUPPORTED_OPS))}")

    def _graph_input(self):
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ModelError(f"the ONNX graph has {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}); expected one")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in inp.type.tensor_type.shape.dim]
        if len(dims) not in (2, 3, 4):
            raise ModelError(f"ONNX input '{inp.name}' has rank {len(dims)}; expected (N, C, H, W) "
                             "images, (N, C, L) sequences or (N, features) vectors")
        self.static_batch = dims[0]
        sample = dims[1:]
        if self.user_input_shape is not None:
            given = tuple(int(v) for v in self.user_input_shape)
            if len(given) != len(sample) or any(d is not None and d != g for d, g in zip(sample, given)):
                raise ModelError(f"input_shape {given} does not match the ONNX input '{inp.name}' "
                                 f"of shape (N, {', '.join('?' if d is None else str(d) for d in sample)})")
            sample = list(given)
        elif None in sample:
            raise ModelError(f"ONNX input '{inp.name}' has symbolic dimensions "
                             f"(N, {', '.join('?' if d is None else str(d) for d in sample)}); "
                             "pass input_shape=(C, H, W), (C, L) or (features,)")
        return inp.name, tuple(sample)

    # ------------------------------------------------------------ helpers
    def _name(self, node, index: int) -> str:
        return self.b.unique_name(sanitize_name(node.name, f"{node.op_type}_{index}"))

    def _layer_input(self, node, position: int = 0) -> Tensor:
        name = node.input[position]
        if name in self.constants:
            raise ModelError(f"ONNX node '{node.name}' ({node.op_type}): input {position} "
                             f"'{name}' is a constant; expected the output of a layer")
        return self.b.tensor(name, node.name)

    def _const(self, node, position: int, what: str, optional: bool = False):
        if len(node.input) <= position or not node.input[position]:
            if optional:
                return None
            raise ModelError(f"ONNX node '{node.name}' ({node.op_type}) has no {what} input")
        name = node.input[position]
        if name not in self.constants:
            raise ModelError(f"ONNX node '{node.name}' ({node.op_type}): {what} '{name}' must be a "
                             "constant (initializer), but it is computed by the graph")
        return self.constants[name]

    def _need_rank(self, node, t: Tensor, *ranks: int):
        """Refuse an input whose ONNX sample rank is none of ``ranks``."""
        if sample_rank(t) not in ranks:
            expected = " or ".join({3: "(N, C, H, W)", 2: "(N, C, L)", 1: "(N, features)"}[r] for r in ranks)
            why = "; flatten it first" if ranks == (1,) and sample_rank(t) > 1 else ""
            raise ModelError(f"ONNX node '{node.name}' ({node.op_type}) expects a {expected} "
                             f"input, got shape (N, {', '.join(map(str, onnx_shape(t)))}){why}")

    def _map_input(self, node, *ranks: int, position: int = 0):
        """(input as a map, attributes lifted to 2-D) for a windowed op on
        (N, C, H, W) or 1-D (N, C, L) tensors."""
        t = self._layer_input(node, position)
        self._need_rank(node, t, *ranks)
        if not t.one_d:
            return t, node_attributes(node)
        return self.b.as_map(node.name, node.input[position], t), _lift_1d(node_attributes(node))

    def _unused(self, node, position: int, what: str):
        if len(node.output) > position and node.output[position] and \
                self.b.consumers.get(node.output[position], 0):
            raise ModelError(f"ONNX node '{node.name}' ({node.op_type}): its {what} output is "
                             "used, which the model format cannot express")

    def _spatial_pads(self, node, a: dict, t: Tensor, kernel, strides, dilations):
        """('valid' | 'same' | 'explicit', ((top, bottom), (left, right)))."""
        h, w = t.shape[0], t.shape[1]
        tf_same = tuple(same_padding(size, k, s, d)[1:]
                        for size, k, s, d in zip((h, w), kernel, strides, dilations))
        auto = a.get("auto_pad", "NOTSET")
        if auto == "SAME_UPPER":
            pads = tf_same
        elif auto == "SAME_LOWER":  # the extra cell goes before, not after as in TensorFlow
            pads = tuple((after, before) for before, after in tf_same)
        elif auto == "VALID":
            pads = ((0, 0), (0, 0))
        else:
            p = list(a.get("pads", [0, 0, 0, 0]))
            if len(p) != 4:
                raise ModelError(f"ONNX node '{node.name}': pads {p} is not a 2-D padding")
            pads = ((p[0], p[2]), (p[1], p[3]))
        if min(v for pair in pads for v in pair) < 0:
            raise ModelError(f"ONNX node '{node.name}': negative pads {pads} are not supported")
        if pads == ((0, 0), (0, 0)):
            return "valid", pads
        return ("same" if pads == tf_same else "explicit"), pads

    def _zero_pad(self, node, index: int, t: Tensor, pads) -> Tensor:
        """Insert a ZeroPadding2D layer before a 'valid' convolution or pooling."""
        out = f"{node.output[0]}#pad"
        self.b.consumers[out] = 1  # read only by the layer this pads for
        name = self.b.unique_name(sanitize_name(node.name, f"{node.op_type}_{index}") + "_pad")
        return self.b.add(node.name, out, "ZeroPadding2D", {"padding": [list(p) for p in pads]},
                          [t], name=name)

    def _check_window(self, node, a: dict, kernel):
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise ModelError(f"ONNX node '{node.name}': pooling dilations {a['dilations']} are not supported")
        if len(kernel) != 2:
            raise ModelError(f"ONNX node '{node.name}': kernel_shape {kernel} is not 2-D")

    def _check_ceil_mode(self, node, a: dict, t: Tensor, kernel, strides, pads):
        if not a.get("ceil_mode", 0):
            return
        for size, k, s, (before, after) in zip(t.shape[:2], kernel, strides, pads):
            if (size + before + after - k) % s:
                raise ModelError(f"ONNX node '{node.name}': ceil_mode=1 adds a partial window for "
                                 f"input size {size}, kernel {k}, stride {s}; only floor mode is supported")

    # -------------------------------------------------------------- nodes
    def _convert(self, index: int, node):
        op = node.op_type
        if op == "Constant":
            self.constants[node.output[0]] = constant_node_value(node)
            return
        if op == "Shape":
            self._shape(node)
            return
        ins = [n for n in node.input]
        if op in FOLDABLE and all(not n or n in self.constants for n in ins):
            values = [self.constants[n] if n else None for n in ins]
            self.constants[node.output[0]] = fold(node, values, self.opset)
            return
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise ModelError(f"ONNX node '{node.name}': {op} is only supported on constant "
                             "(shape) inputs, not on layer outputs")
        handler(index, node, node_attributes(node))

    def _shape(self, node):
        name = node.input[0]
        if name in self.constants:
            shape = np.asarray(self.constants[name].shape, np.int64)
        else:
            t = self.b.tensor(name, node.name)
            shape = np.asarray((BATCH,) + onnx_shape(t), object)
        a = node_attributes(node)
        self.constants[node.output[0]] = shape[a.get("start", 0):a.get("end", None)]

    def _op_Conv(self, index, node, a):
        t, a = self._map_input(node, 3, 2)
        w = self._const(node, 1, "weight")
        b = self._const(node, 2, "bias", optional=True)
        if w.ndim != sample_rank(t) + 1:
            raise ModelError(f"ONNX node '{node.name}': a weight of shape {w.shape} does not fit an "
                             f"input of shape (N, {', '.join(map(str, onnx_shape(t)))}); only 2-D "
                             "and 1-D convolutions are supported")
        if t.one_d:
            w = w[:, :, None, :]    # (O, I, k) -> (O, I, 1, k)
        out_ch, in_per_group, kh, kw = w.shape
        channels, group = t.shape[2], a.get("group", 1)
        if group == 1 and in_per_group == channels:
            type_, config = "Conv2D", {"filters": out_ch}
            kernel = w.transpose(2, 3, 1, 0)                       # (O, I, kh, kw) -> (kh, kw, I, O)
        elif group == channels and in_per_group == 1 and out_ch % channels == 0:
            type_, config = "DepthwiseConv2D", {"depth_multiplier": out_ch // channels}
            # output channel c*m + k reads input channel c -> (kh, kw, C, m)
            kernel = w.reshape(channels, out_ch // channels, kh, kw).transpose(2, 3, 0, 1)
        else:
            raise ModelError(f"ONNX node '{node.name}': grouped convolution with group={group} on "
                             f"{channels} input channels (weight {w.shape}) is not supported; only "
                             "group=1 and depthwise (group = input channels) are")
        strides = list(a.get("strides", [1, 1]))
        dilations = list(a.get("dilations", [1, 1]))
        padding, pads = self._spatial_pads(node, a, t, (kh, kw), strides, dilations)
        if padding == "explicit":
            t, padding = self._zero_pad(node, index, t, pads), "valid"
        config.update(kernel_size=[kh, kw], strides=strides, padding=padding,
                      dilation_rate=dilations, use_bias=b is not None)
        self.b.add(node.name, node.output[0], type_, config, [t],
                   weights={"kernel": kernel, "bias": b}, name=self._name(node, index))

    def _dense(self, index, node, t: Tensor, kernel, bias):
        self._need_rank(node, t, 1)
        if kernel.shape[0] != t.shape[0]:
            raise ModelError(f"ONNX node '{node.name}': weight has {kernel.shape[0]} input rows, "
                             f"but its input has {t.shape[0]} features")
        if t.order is not None:
            kernel = kernel[t.order]  # rows in the channels-last order of the flattened input
        self.b.add(node.name, node.output[0], "Dense",
                   {"units": int(kernel.shape[1]), "use_bias": bias is not None}, [t],
                   weights={"kernel": kernel, "bias": bias}, name=self._name(node, index))

    def _op_Gemm(self, index, node, a):
        t = self._layer_input(node)
        w = self._const(node, 1, "weight")
        c = self._const(node, 2, "bias", optional=True)
        if a.get("transA", 0):
            raise ModelError(f"ONNX node '{node.name}': Gemm with transA=1 is not supported")
        kernel = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        bias = None
        if c is not None:
            if c.size not in (1, kernel.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
                raise ModelError(f"ONNX node '{node.name}': bias of shape {c.shape} is not one value "
                                 f"per output ({kernel.shape[1]})")
            bias = np.broadcast_to(c.reshape(-1), (kernel.shape[1],)) * a.get("beta", 1.0)
        self._dense(index, node, t, kernel, bias)

    def _op_MatMul(self, index, node, a):
        t = self._layer_input(node)
        w = self._const(node, 1, "weight")
        if w.ndim != 2:
            raise ModelError(f"ONNX node '{node.name}': MatMul weight must be 2-D, got shape {w.shape}")
        self._dense(index, node, t, w, None)

    def _op_Add(self, index, node, a):
        consts = [n in self.constants for n in node.input]
        if not any(consts):   # a residual or skip connection
            self._op_Sum(index, node, a)
            return
        t = self._layer_input(node, consts.index(False))
        bias = self.constants[node.input[consts.index(True)]]
        channels = t.shape[-1]
        rank = sample_rank(t) + 1  # with the batch axis; the channel axis is 1
        shape = (1,) * (rank - bias.ndim) + bias.shape
        if len(shape) != rank or any(d != 1 for i, d in enumerate(shape) if i != 1) or \
                shape[1] not in (1, channels):
            raise ModelError(f"ONNX node '{node.name}': adds a constant of shape {bias.shape}, "
                             f"expected one value per channel ({channels}) to use it as a bias")
        self.b.add_bias(node.name, node.output[0], t, bias)

    def _op_Sum(self, index, node, a):
        """The sum of layer outputs of one shape (no broadcasting): an Add layer."""
        if any(n in self.constants for n in node.input):
            raise ModelError(f"ONNX node '{node.name}': {node.op_type} of layer outputs and constants; "
                             "only a per-channel constant added to one layer output (a bias) is supported")
        inputs = [self._layer_input(node, k) for k in range(len(node.input))]
        if any(t.shape != inputs[0].shape for t in inputs):
            raise ModelError(f"ONNX node '{node.name}': adds layer outputs of shapes "
                             f"{[onnx_shape(t) for t in inputs]}; broadcasting is not supported")
        self.b.add_tensors(node.name, node.output[0], inputs, name=self._name(node, index))

    def _op_Relu(self, index, node, a):
        self.b.activation(node.name, node.output[0], self._layer_input(node), "relu")

    def _op_Softmax(self, index, node, a):
        t = self._layer_input(node)
        rank = sample_rank(t) + 1
        axis = a.get("axis", -1 if self.opset >= 13 else 1)
        # Only the channel (feature) axis maps to the last neutral axis.
        if axis % rank != 1 or (rank != 2 and self.opset < 13):
            raise ModelError(f"ONNX node '{node.name}': Softmax over axis {axis} of a rank-{rank} "
                             "tensor; only the channel/feature axis 1 is supported")
        self.b.activation(node.name, node.output[0], t, "softmax")

    def _op_BatchNormalization(self, index, node, a):
        if a.get("training_mode", 0):
            raise ModelError(f"ONNX node '{node.name}': BatchNormalization in training mode "
                             "cannot be folded; export the model in eval mode")
        for position in (1, 2):
            self._unused(node, position, "running statistics")
        t = self._layer_input(node)
        gamma, beta, mean, var = (self._const(node, i, what) for i, what in
                                  ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        self.b.fold_batchnorm(node.name, node.output[0], t, gamma, beta, mean, var,
                              a.get("epsilon", 1e-5))

    def _pool(self, index, node, a, type_: str):
        t, a = self._map_input(node, 3, 2)
        kernel = list(a["kernel_shape"])
        self._check_window(node, a, kernel)
        strides = list(a.get("strides", [1, 1]))
        padding, pads = self._spatial_pads(node, a, t, kernel, strides, (1, 1))
        self._check_ceil_mode(node, a, t, kernel, strides, pads)
        if type_ == "AveragePooling2D" and padding != "valid":
            if a.get("count_include_pad", 0):
                # The padding's zeros count in the average: explicit zero padding,
                # then a valid pool whose every window holds kernel_h * kernel_w cells.
                t, padding = self._zero_pad(node, index, t, pads), "valid"
            elif padding == "explicit":
                raise ModelError(f"ONNX node '{node.name}': AveragePool pads {pads} differ from "
                                 f"TensorFlow 'same' padding for a {t.shape[0]}x{t.shape[1]} input "
                                 f"(kernel {kernel}, strides {strides}); only 'same' or no padding "
                                 "can be expressed")
        if type_ == "MaxPooling2D":
            self._unused(node, 1, "indices")
            if padding == "explicit":
                # ONNX pads max pooling with -inf, ZeroPadding2D with 0; the same
                # result only for non-negative input, which a ReLU before (now or
                # merged later) guarantees.
                if t.relu_sources is None:
                    raise ModelError(f"ONNX node '{node.name}': MaxPool pads {pads} are not "
                                     "TensorFlow 'same' padding, and its input may be negative "
                                     f"({self.b.describe(t)}), so zero padding would change the result")
                t, padding = self._zero_pad(node, index, t, pads), "valid"
        self.b.add(node.name, node.output[0], type_,
                   {"pool_size": kernel, "strides": strides, "padding": padding}, [t],
                   name=self._name(node, index))

    def _op_AveragePool(self, index, node, a):
        self._pool(index, node, a, "AveragePooling2D")

    def _op_MaxPool(self, index, node, a):
        self._pool(index, node, a, "MaxPooling2D")

    def _global_pool(self, index, node, type_: str):
        t, _ = self._map_input(node, 3, 2)
        window = [t.shape[0], t.shape[1]]
        self.b.add(node.name, node.output[0], type_,
                   {"pool_size": window, "strides": window, "padding": "valid"}, [t],
                   name=self._name(node, index))

    def _op_GlobalAveragePool(self, index, node, a):
        self._global_pool(index, node, "AveragePooling2D")

    def _op_GlobalMaxPool(self, index, node, a):
        self._global_pool(index, node, "MaxPooling2D")

    # ------------------------------------------------------ reshaping ops
    def _op_Clip(self, index, node, a):
        """Clip(0, c) after a Conv/Gemm is a clipped ReLU (PyTorch's ReLU6 exports as Clip(0, 6))."""
        t = self._layer_input(node)
        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            lo = self._const(node, 1, "min", optional=True)
            hi = self._const(node, 2, "max", optional=True)
        lo = -np.inf if lo is None else float(np.asarray(lo).reshape(-1)[0])
        hi = np.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if lo != 0.0 or not hi > 0:
            raise ModelError(f"ONNX node '{node.name}': Clip({lo:g}, {hi:g}); only Clip(0, max) with "
                             "max > 0 (a clipped ReLU such as ReLU6) is supported")
        if np.isinf(hi):
            self.b.activation(node.name, node.output[0], t, "relu")
        else:
            self.b.clipped_relu(node.name, node.output[0], t, hi)

    def _op_Dropout(self, index, node, a):
        mode = self._const(node, 2, "training_mode", optional=True)
        if mode is not None and bool(np.asarray(mode).reshape(-1)[0]):
            raise ModelError(f"ONNX node '{node.name}': Dropout in training mode; export in eval mode")
        self._unused(node, 1, "mask")
        self.b.alias(node.output[0], self._layer_input(node), node.name)

    def _op_Identity(self, index, node, a):
        self.b.alias(node.output[0], self._layer_input(node), node.name)


def _lift_1d(a: dict) -> dict:
    """The attributes of a 1-D Conv or pool as those of the 2-D one on (1, L) maps."""
    lifted = dict(a)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in a:
            lifted[key] = [1, *a[key]]
    if "pads" in a:
        p = list(a["pads"])
        lifted["pads"] = [0, p[0], 0, p[1]] if len(p) == 2 else p   # (begin, end) -> (top, left, bottom, right)
    return lifted
