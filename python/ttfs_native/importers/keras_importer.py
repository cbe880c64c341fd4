"""Import a Keras model file (``.keras`` or ``.h5``) into a :class:`Model`.

Reads the files with h5py, zipfile and json only: neither TensorFlow nor
Keras is needed. Keras is channels-last like the model format, so kernels
are taken as they are; batch norm is folded, activations merged and dropout
removed by the shared :class:`~._graph.GraphBuilder`. 1-D layers (Conv1D,
DepthwiseConv1D, pooling, padding and upsampling 1-D) become the 2-D ones
on (1, length, channels) maps with (1, k) windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..model.layers import ModelError
from ._graph import GraphBuilder, Tensor, sanitize_name, sample_rank
from ._keras_files import read_keras_file

# Layers that do nothing at inference time.
_INFERENCE_IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout",
                       "GaussianNoise", "AlphaDropout")


@dataclass
class _KerasLayer:
    class_name: str
    name: str
    config: dict
    inbound: list  # names of the layers it reads


def from_keras(path):
    """Convert a Keras model saved as ``.keras`` (Keras 3) or ``.h5`` (Keras 2/3) into a Model."""
    path = Path(path)
    config, weights, metadata = read_keras_file(path)
    input_name, input_shape, layers, output = _parse_model(config)
    _check_layers(layers)
    consumers = {}
    for layer in layers:
        for n in layer.inbound:
            consumers[n] = consumers.get(n, 0) + 1
    consumers[output] = consumers.get(output, 0) + 1
    # A rank-2 Keras input is (steps, channels): a 1-D tensor.
    builder = GraphBuilder(input_name, input_shape, consumers, "Keras layer", input_one_d=len(input_shape) == 2)
    converter = _KerasConverter(builder, weights)
    for layer in layers:
        converter.convert(layer)
    return converter.b.finish(output, metadata)


# ------------------------------------------------------------ model config
def _parse_model(config: dict):
    """(input layer name, input shape, layers in topological order, output layer name)."""
    cls, conf = config.get("class_name"), config.get("config")
    if cls == "Sequential":
        return _parse_sequential(config, conf)
    if cls in ("Functional", "Model"):
        return _parse_functional(conf)
    raise ModelError(f"Keras model class {cls!r} is not supported; expected Sequential or Functional")


def _batch_shape(cfg: dict):
    shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
    return None if shape is None else list(shape)


def _sample_shape(shape, where: str) -> tuple:
    sample = shape[1:]
    if not sample or not all(isinstance(d, int) and d > 0 for d in sample):
        raise ModelError(f"{where}: input shape {shape} must have known positive dimensions "
                         "after the batch axis")
    return tuple(sample)


def _parse_sequential(config: dict, conf):
    raw = conf["layers"] if isinstance(conf, dict) else conf  # very old Keras: a bare list
    layers, shape, input_name = [], None, "input_layer"
    for entry in raw:
        cfg = entry.get("config", {})
        if entry.get("class_name") == "InputLayer":
            shape, input_name = _batch_shape(cfg), cfg.get("name", input_name)
            continue
        if shape is None and not layers:
            shape = _batch_shape(cfg)  # Keras 2: input_shape given to the first layer
        previous = layers[-1].name if layers else input_name
        layers.append(_KerasLayer(entry.get("class_name"), cfg.get("name"), cfg, [previous]))
    if shape is None and isinstance(conf, dict):
        shape = conf.get("build_input_shape")
    if shape is None:
        shape = (config.get("build_config") or {}).get("input_shape")
    if shape is None:
        raise ModelError("the Sequential model has no input shape (no InputLayer and never built)")
    if not layers:
        raise ModelError("the Sequential model has no layers")
    return input_name, _sample_shape(shape, "Sequential model"), layers, layers[-1].name


def _endpoints(value, what: str) -> str:
    """The single layer name of 'input_layers' / 'output_layers' ([name, 0, 0] or a list of them)."""
    entries = [value] if value and isinstance(value[0], str) else list(value or [])
    if len(entries) != 1:
        raise ModelError(f"the model has {len(entries)} {what}; exactly one is supported")
    return entries[0][0]


def _keras_history(node) -> list:
    """Inbound layer names of one call: Keras 3 {'args': ...} or Keras 2 [[name, i, j, kw], ...]."""
    names = []

    def walk(v):
        if isinstance(v, dict):
            if v.get("class_name") == "__keras_tensor__":
                history = v["config"]["keras_history"]
                if history[1:3] != [0, 0]:
                    raise ModelError(f"tensor {history} is not the single output of a single call; "
                                     "shared layers and multi-output layers are not supported")
                names.append(history[0])
        elif isinstance(v, list):
            for item in v:
                walk(item)

    if isinstance(node, dict):
        walk(node.get("args", []))
    else:
        for entry in node:
            if entry[1:3] != [0, 0]:
                raise ModelError(f"inbound {entry[:3]} is not the single output of a single call; "
                                 "shared layers and multi-output layers are not supported")
            names.append(entry[0])
    return names


def _parse_functional(conf: dict):
    layers, shape, input_name = {}, None, _endpoints(conf.get("input_layers"), "inputs")
    for entry in conf["layers"]:
        cfg = entry.get("config", {})
        name = entry.get("name", cfg.get("name"))
        nodes = entry.get("inbound_nodes", [])
        if entry.get("class_name") == "InputLayer":
            if name == input_name:
                shape = _batch_shape(cfg)
            continue
        if len(nodes) != 1:
            raise ModelError(f"Keras layer '{name}' is called {len(nodes)} times; shared (or "
                             "unused) layers are not supported")
        layers[name] = _KerasLayer(entry.get("class_name"), name, cfg, _keras_history(nodes[0]))
    if shape is None:
        raise ModelError(f"input layer '{input_name}' has no batch_shape")
    return input_name, _sample_shape(shape, f"input layer '{input_name}'"), \
        _topological(layers, input_name), _endpoints(conf.get("output_layers"), "outputs")


def _topological(layers: dict, input_name: str) -> list:
    done, ordered, pending = {input_name}, [], list(layers.values())
    while pending:
        ready = [layer for layer in pending if all(n in done for n in layer.inbound)]
        if not ready:
            missing = {n for layer in pending for n in layer.inbound if n not in done and n not in layers}
            raise ModelError(f"layers {[layer.name for layer in pending]} read unknown layer(s) "
                             f"{sorted(missing)} or form a cycle")
        for layer in ready:
            done.add(layer.name)
            ordered.append(layer)
        pending = [layer for layer in pending if layer.name not in done]
    return ordered


def _check_layers(layers: list):
    """Raise one error naming every unsupported layer and every channels-first layer."""
    unsupported = [f"{layer.name} ({layer.class_name})" for layer in layers
                   if not hasattr(_KerasConverter, f"_layer_{layer.class_name}")
                   and layer.class_name not in _INFERENCE_IDENTITY]
    if unsupported:
        raise ModelError(f"unsupported Keras layer(s): {', '.join(unsupported)}")
    first = [layer.name for layer in layers if layer.config.get("data_format") == "channels_first"]
    if first:
        raise ModelError(f"Keras layer(s) {', '.join(map(repr, first))} use data_format "
                         "'channels_first'; only channels-last models are supported")


# ----------------------------------------------------------------- layers
class _KerasConverter:
    def __init__(self, builder: GraphBuilder, weights: dict):
        self.b = builder
        self.weights = weights

    def convert(self, layer: _KerasLayer):
        inputs = [self.b.tensor(n, layer.name) for n in layer.inbound]
        if layer.class_name in _INFERENCE_IDENTITY:
            self.b.alias(layer.name, inputs[0], layer.name)
            return
        getattr(self, f"_layer_{layer.class_name}")(layer, inputs)

    def _name(self, layer: _KerasLayer, suffix: str = "") -> str:
        return self.b.unique_name(sanitize_name(layer.name, layer.class_name.lower()) + suffix)

    def _arrays(self, layer: _KerasLayer, expected: list) -> dict:
        arrays = self.weights.get(layer.name, [])
        if len(arrays) != len(expected):
            raise ModelError(f"Keras layer '{layer.name}': found {len(arrays)} weight arrays, "
                             f"expected {len(expected)} ({', '.join(expected)})")
        return dict(zip(expected, arrays))

    @staticmethod
    def _activation_name(layer: _KerasLayer, value) -> str:
        if isinstance(value, dict):  # serialized function: {"class_name": "function", "config": "relu"}
            value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
        value = "linear" if value is None else value
        if value not in ("relu", "relu6", "softmax", "linear"):
            raise ModelError(f"Keras layer '{layer.name}': activation {value!r} is not supported "
                             "(only relu, relu6, softmax and linear)")
        return value

    def _weighted(self, layer: _KerasLayer, inputs: list, type_: str, config: dict, kernel_key: str,
                  one_d: bool = False):
        c = layer.config
        use_bias = bool(c.get("use_bias", True))
        arrays = self._arrays(layer, [kernel_key] + (["bias"] if use_bias else []))
        act = self._activation_name(layer, c.get("activation"))
        if act == "relu6":
            config["activation"], config["max_value"] = "relu", 6.0
        elif act != "linear":
            config["activation"] = act  # built into the layer: no consumer check needed
        config["use_bias"] = use_bias
        kernel = arrays[kernel_key]
        if one_d:   # (k, in, out) -> (1, k, in, out)
            kernel, inputs = kernel[None], [self._map(layer, inputs[0])]
        # A linear layer stays open: a following BatchNormalization or Activation merges into it.
        self.b.add(layer.name, layer.name, type_, config, inputs,
                   weights={"kernel": kernel, "bias": arrays.get("bias")}, name=self._name(layer))

    def _map(self, layer: _KerasLayer, t: Tensor, position: int = 0) -> Tensor:
        """The (1, steps, channels) map of a 1-D layer's input."""
        return self.b.as_map(layer.name, layer.inbound[position], t)

    @staticmethod
    def _window(c: dict) -> dict:
        return {"kernel_size": c["kernel_size"], "strides": c.get("strides", 1),
                "padding": c.get("padding", "valid"), "dilation_rate": c.get("dilation_rate", 1)}

    @staticmethod
    def _window_1d(layer: _KerasLayer, keys: dict) -> dict:
        """A 1-D layer's window fields (key -> default) as those of the 2-D layer on (1, L) maps."""
        c, out = layer.config, {}
        for key, default in keys.items():
            value = c.get(key, default)
            value = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
            out[key] = value if value is None or isinstance(value, str) else [1, value]
        if out.get("padding") == "causal":
            raise ModelError(f"Keras layer '{layer.name}' ({layer.class_name}): padding 'causal' is not "
                             "supported; only 'valid' and 'same' (pad the input with ZeroPadding1D and use "
                             "'valid' for the same result)")
        return out

    def _layer_Dense(self, layer, inputs):
        self._weighted(layer, inputs, "Dense", {"units": layer.config["units"]}, "kernel")

    def _layer_Conv2D(self, layer, inputs):
        if layer.config.get("groups", 1) != 1:
            raise ModelError(f"Keras layer '{layer.name}': grouped convolution "
                             f"(groups={layer.config['groups']}) is not supported")
        self._weighted(layer, inputs, "Conv2D",
                       {"filters": layer.config["filters"], **self._window(layer.config)}, "kernel")

    def _layer_DepthwiseConv2D(self, layer, inputs):
        config = {"depth_multiplier": layer.config.get("depth_multiplier", 1), **self._window(layer.config)}
        self._weighted(layer, inputs, "DepthwiseConv2D", config, "depthwise_kernel")

    _CONV_1D = {"kernel_size": None, "strides": 1, "padding": "valid", "dilation_rate": 1}

    def _layer_Conv1D(self, layer, inputs):
        if layer.config.get("groups", 1) != 1:
            raise ModelError(f"Keras layer '{layer.name}': grouped convolution "
                             f"(groups={layer.config['groups']}) is not supported")
        config = {"filters": layer.config["filters"], **self._window_1d(layer, self._CONV_1D)}
        self._weighted(layer, inputs, "Conv2D", config, "kernel", one_d=True)

    def _layer_DepthwiseConv1D(self, layer, inputs):
        config = {"depth_multiplier": layer.config.get("depth_multiplier", 1),
                  **self._window_1d(layer, self._CONV_1D)}
        self._weighted(layer, inputs, "DepthwiseConv2D", config, "depthwise_kernel", one_d=True)

    def _pool(self, layer, inputs, type_: str):
        c = layer.config
        self.b.add(layer.name, layer.name, type_,
                   {"pool_size": c.get("pool_size", 2), "strides": c.get("strides"),
                    "padding": c.get("padding", "valid")}, inputs, name=self._name(layer))

    def _layer_AveragePooling2D(self, layer, inputs):
        self._pool(layer, inputs, "AveragePooling2D")

    def _layer_MaxPooling2D(self, layer, inputs):
        self._pool(layer, inputs, "MaxPooling2D")

    def _pool_1d(self, layer, inputs, type_: str):
        config = self._window_1d(layer, {"pool_size": 2, "strides": None, "padding": "valid"})
        self.b.add(layer.name, layer.name, type_, config, [self._map(layer, inputs[0])], name=self._name(layer))

    def _layer_AveragePooling1D(self, layer, inputs):
        self._pool_1d(layer, inputs, "AveragePooling2D")

    def _layer_MaxPooling1D(self, layer, inputs):
        self._pool_1d(layer, inputs, "MaxPooling2D")

    def _global_pool(self, layer, inputs, type_: str):
        one_d = layer.class_name.endswith("1D")
        t = self._map(layer, inputs[0]) if one_d else inputs[0]
        if len(t.shape) != 3:
            raise ModelError(f"Keras layer '{layer.name}' needs a (height, width, channels) "
                             f"input, got {t.shape}")
        window = [t.shape[0], t.shape[1]]
        keepdims = layer.config.get("keepdims", False)
        pooled = f"{layer.name}#pool"
        out = layer.name if keepdims else pooled
        self.b.consumers[pooled] = 1  # read only by the Flatten below
        t = self.b.add(layer.name, out, type_, {"pool_size": window, "strides": window,
                                                "padding": "valid"}, [t], name=self._name(layer))
        if not keepdims:  # (1, 1, C) -> (C,), as Keras returns it
            self.b.add(layer.name, layer.name, "Flatten", {}, [t], name=self._name(layer, "_flatten"))

    def _layer_GlobalAveragePooling2D(self, layer, inputs):
        self._global_pool(layer, inputs, "AveragePooling2D")

    def _layer_GlobalMaxPooling2D(self, layer, inputs):
        self._global_pool(layer, inputs, "MaxPooling2D")

    def _layer_GlobalAveragePooling1D(self, layer, inputs):
        self._global_pool(layer, inputs, "AveragePooling2D")

    def _layer_GlobalMaxPooling1D(self, layer, inputs):
        self._global_pool(layer, inputs, "MaxPooling2D")

    def _layer_Flatten(self, layer, inputs):
        self.b.add(layer.name, layer.name, "Flatten", {}, inputs, name=self._name(layer))

    def _layer_Reshape(self, layer, inputs):
        target = list(layer.config["target_shape"])
        one_d = len(target) == 2   # (steps, channels), held as a (1, steps, channels) map
        self.b.add(layer.name, layer.name, "Reshape", {"target_shape": [1] * one_d + target}, inputs,
                   name=self._name(layer), one_d=one_d)

    def _layer_ZeroPadding2D(self, layer, inputs):
        padding = layer.config.get("padding", 1)
        if isinstance(padding, (list, tuple)):
            padding = [list(p) if isinstance(p, (list, tuple)) else p for p in padding]
        self.b.add(layer.name, layer.name, "ZeroPadding2D", {"padding": padding}, inputs,
                   name=self._name(layer))

    def _layer_ZeroPadding1D(self, layer, inputs):
        padding = layer.config.get("padding", 1)
        padding = list(padding) if isinstance(padding, (list, tuple)) else [padding, padding]
        self.b.add(layer.name, layer.name, "ZeroPadding2D", {"padding": [[0, 0], padding]},
                   [self._map(layer, inputs[0])], name=self._name(layer))

    def _layer_UpSampling1D(self, layer, inputs):
        self.b.add(layer.name, layer.name, "UpSampling2D", {"size": [1, layer.config.get("size", 2)]},
                   [self._map(layer, inputs[0])], name=self._name(layer))

    def _layer_Concatenate(self, layer, inputs):
        axis = layer.config.get("axis", -1)
        if any(t.one_d and len(t.shape) == 3 for t in inputs):
            # 1-D tensors, some already (1, steps, channels) maps: all as maps, the
            # steps axis (Keras axis 1) moves to 2
            inputs = [self._map(layer, t, i) for i, t in enumerate(inputs)]
            axis = axis + 1 if isinstance(axis, int) and axis > 0 else axis
        self.b.add(layer.name, layer.name, "Concatenate", {"axis": axis}, inputs, name=self._name(layer))

    def _layer_BatchNormalization(self, layer, inputs):
        c, t = layer.config, inputs[0]
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        rank = sample_rank(t) + 1
        if not isinstance(axis, int) or axis % rank != rank - 1:
            raise ModelError(f"Keras layer '{layer.name}': batch normalization over axis {c.get('axis')} "
                             f"of a rank-{rank} tensor; only the last (channel) axis is supported")
        scale, center = c.get("scale", True), c.get("center", True)
        names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
        arrays = self._arrays(layer, names)
        channels = t.shape[-1]
        gamma = arrays.get("gamma", [1.0] * channels)  # scale=False: gamma is 1
        beta = arrays.get("beta", [0.0] * channels)    # center=False: beta is 0
        self.b.fold_batchnorm(layer.name, layer.name, t, gamma, beta, arrays["moving_mean"],
                              arrays["moving_variance"], c.get("epsilon", 1e-3))

    def _layer_Activation(self, layer, inputs):
        act = self._activation_name(layer, layer.config.get("activation"))
        if act == "relu6":
            self.b.clipped_relu(layer.name, layer.name, inputs[0], 6.0)
        else:
            self.b.activation(layer.name, layer.name, inputs[0], act)

    def _layer_ReLU(self, layer, inputs):
        c = layer.config
        if c.get("negative_slope", 0) or c.get("threshold", 0):
            raise ModelError(f"Keras layer '{layer.name}': ReLU with negative_slope={c.get('negative_slope')}, "
                             f"threshold={c.get('threshold')} is not a (clipped) ReLU")
        if c.get("max_value") is not None:
            self.b.clipped_relu(layer.name, layer.name, inputs[0], float(c["max_value"]))
        else:
            self.b.activation(layer.name, layer.name, inputs[0], "relu")

    def _layer_UpSampling2D(self, layer, inputs):
        c = layer.config
        if c.get("interpolation", "nearest") != "nearest":
            raise ModelError(f"Keras layer '{layer.name}': UpSampling2D interpolation "
                             f"{c.get('interpolation')!r}; only 'nearest' is supported")
        self.b.add(layer.name, layer.name, "UpSampling2D", {"size": c.get("size", 2)}, inputs,
                   name=self._name(layer))

    def _layer_Add(self, layer, inputs):
        self.b.add_tensors(layer.name, layer.name, inputs, name=self._name(layer))

    def _layer_Softmax(self, layer, inputs):
        axis, rank = layer.config.get("axis", -1), sample_rank(inputs[0])
        if axis not in (-1, [-1], rank, [rank]):
            raise ModelError(f"Keras layer '{layer.name}': softmax over axis {axis}; only the last axis is supported")
        self.b.activation(layer.name, layer.name, inputs[0], "softmax")
