"""Shared machinery of the importers: building the layer list of a Model.

An importer walks a framework graph node by node and calls a
:class:`GraphBuilder`, which keeps the neutral layer list and weights and
tracks, for every framework tensor, which neutral layer produces it. The
builder merges what the model format keeps implicit:

* BatchNormalization and bias additions fold into the Conv/Dense right
  before them (only while that layer's output is still raw);
* a ReLU merges into the Conv/Dense that produced its input, also through
  layers that commute with ReLU (max pooling, flatten, reshape, zero
  padding, concatenation), because ``relu(maxpool(x)) == maxpool(relu(x))``;
  a ReLU on values that are already non-negative is dropped;
* softmax becomes the activation of the output layer;
* an addition of two or more layer outputs becomes an Add layer whose
  activation is the ReLU (or clipped ReLU) after it; an addend that is the
  raw output of a Conv/Dense read only by the addition becomes a residual
  branch (activation linear), any other addend an identity inbound.

A ReLU or batch norm may only move into an earlier layer when nothing else
reads the values in between: every framework tensor on the way must have a
single consumer.

1-D networks (Conv1D, 1-D pooling, ...) are lowered exactly onto the 2-D
layers: a (length, channels) tensor is held as a (1, length, channels) map,
and a 1-D window of size k, stride s, dilation d is the 2-D window (1, k),
(1, s), (1, d). The model input stays (length, channels); a Reshape layer to
(1, length, channels) follows it where a 1-D layer first reads it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..model.layers import (LayerSpec, ModelError, WEIGHTED_TYPES, expected_weight_shapes, infer_shape,
                      normalise_config)
from ..model.model import INPUT_NAME, Model

# Layers through which a ReLU can be moved back to the layer that feeds them.
_RELU_COMMUTING = ("MaxPooling2D", "Flatten", "Reshape", "ZeroPadding2D", "Concatenate", "UpSampling2D")


@dataclass(frozen=True, eq=False)
class Tensor:
    """What the importer knows about one framework tensor."""

    layer: str          # neutral layer that produces it (INPUT_NAME for the input)
    shape: tuple        # channels-last shape without the batch axis
    # Weighted layers (activation still undecided) whose raw output reaches
    # this tensor through ReLU-commuting layers only. frozenset(): the values
    # are non-negative. None: sign unknown and no ReLU can be moved back.
    relu_sources: Optional[frozenset] = None
    # Framework tensors between those sources and this one (inclusive); all
    # must have a single consumer for a ReLU or batch norm to move back.
    path: tuple = ()
    # Set when this is the raw output of a weighted layer without activation,
    # so batch norm, a bias or an activation can merge into that layer.
    open_layer: Optional[str] = None
    # Flat tensors only (ONNX): the neutral vector's element i holds the
    # framework's element order[i]. None means the same order.
    order: Optional[np.ndarray] = None
    # A 1-D framework tensor (length, channels): ONNX (C, L), Keras (L, C).
    # Its neutral shape is (L, C) until a 1-D layer needs it as a map, then
    # the (1, L, C) map that the 2-D layers read (see GraphBuilder.as_map).
    one_d: bool = False


def sample_rank(t: Tensor) -> int:
    """The rank of the framework's sample (without the batch axis)."""
    return len(t.shape) - 1 if t.one_d and len(t.shape) == 3 else len(t.shape)


def sanitize_name(raw: str, fallback: str) -> str:
    """A layer name without '/' or odd characters (npz keys are '<name>/kernel')."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw.strip("/")).strip("_")
    return name or fallback


class GraphBuilder:
    """Collects neutral layers and weights while an importer walks its graph."""

    def __init__(self, input_name: str, input_shape: tuple, consumers: dict,
                 what: str, name_prefix: str = "", input_one_d: bool = False):
        # consumers: framework tensor name -> number of readers (graph outputs count as one).
        self.consumers = consumers
        self.what = what                  # "ONNX node" or "Keras layer", for messages
        self.name_prefix = name_prefix
        self.input_shape = tuple(int(v) for v in input_shape)
        self.layers: list = []
        self.weights: dict = {}
        self._specs: dict = {}            # neutral name -> LayerSpec (shapes)
        self._taken = {INPUT_NAME}
        # sign unknown
        self.tensors = {input_name: Tensor(INPUT_NAME, self.input_shape, one_d=input_one_d)}
        self.log: list = []               # how framework nodes became layers, for `info` and metadata

    # ------------------------------------------------------------ helpers
    def tensor(self, name: str, node: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelError(f"{self.what} '{node}': input '{name}' is not produced by any "
                             "supported node before it") from None

    def unique_name(self, raw: str) -> str:
        base = self.name_prefix + raw
        name, k = base, 2
        while name in self._taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name

    def spec(self, layer: str) -> LayerSpec:
        return self._specs[layer]

    def _layer_dict(self, layer: str) -> dict:
        return next(d for d in self.layers if d["name"] == layer)

    def _check_movable(self, node: str, t: Tensor, action: str):
        shared = [n for n in t.path if self.consumers.get(n, 0) != 1]
        if shared:
            raise ModelError(f"{self.what} '{node}': cannot {action} because tensor "
                             f"'{shared[0]}' is also read elsewhere (it has "
                             f"{self.consumers.get(shared[0], 0)} readers, expected 1)")

    # ------------------------------------------------------------- layers
    def add(self, node: str, out: str, type_: str, config: dict, inputs: list,
            weights: Optional[dict] = None, order: Optional[np.ndarray] = None,
            name: Optional[str] = None, one_d: Optional[bool] = None) -> Tensor:
        """Append a neutral layer reading ``inputs`` and record its output tensor ``out``.

        Weighted layers given without ``activation`` stay open: a following
        batch norm, bias, ReLU or softmax merges into them. The output is a
        1-D tensor when all inputs are (``one_d`` overrides; Flatten and
        Reshape outputs are not unless it says so).
        """
        if one_d is None:
            one_d = type_ not in ("Flatten", "Reshape") and all(t.one_d for t in inputs)
        name = name or self.unique_name(sanitize_name(node, type_.lower()))
        raw = {"name": name, "type": type_, "inbound": [t.layer for t in inputs], **config}
        spec = LayerSpec(name=name, type=type_, inbound=raw["inbound"],
                         config=normalise_config(name, type_, raw),
                         input_shapes=[t.shape for t in inputs])
        spec.output_shape = infer_shape(spec)
        self._specs[name] = spec
        self.layers.append(raw)
        self.log.append(f"{node} -> layer '{name}' ({type_})")
        if weights is not None:
            self.weights[name] = self._checked_weights(node, spec, weights)
        t = Tensor(name, spec.output_shape, order=order, one_d=one_d,
                   **self._sign(type_, name, config, inputs))
        if t.relu_sources:
            t = dataclasses.replace(t, path=t.path + (out,))
        self.tensors[out] = t
        return t

    def _checked_weights(self, node: str, spec: LayerSpec, weights: dict) -> dict:
        """Float64 copies (folding happens in double precision) of shape-checked weights."""
        kernel_shape, bias_shape = expected_weight_shapes(spec)
        kernel = np.asarray(weights["kernel"], np.float64)
        bias = None if weights.get("bias") is None else np.asarray(weights["bias"], np.float64)
        if kernel.shape != kernel_shape:
            raise ModelError(f"{self.what} '{node}': kernel has shape {kernel.shape}, expected "
                             f"{kernel_shape} for layer '{spec.name}'")
        if bias is not None and bias.shape != bias_shape:
            raise ModelError(f"{self.what} '{node}': bias has shape {bias.shape}, expected "
                             f"{bias_shape} for layer '{spec.name}'")
        return {"kernel": kernel, "bias": bias}

    @staticmethod
    def _sign(type_: str, name: str, config: dict, inputs: list) -> dict:
        if type_ in WEIGHTED_TYPES:
            act = config.get("activation")
            if act is None:
                return {"relu_sources": frozenset([name]), "open_layer": name}
            return {"relu_sources": frozenset() if act == "relu" else None}
        sources = [t.relu_sources for t in inputs]
        if type_ == "AveragePooling2D":
            # relu(avg(x)) != avg(relu(x)): only already non-negative input stays so.
            return {"relu_sources": frozenset() if sources[0] == frozenset() else None}
        if type_ in _RELU_COMMUTING and all(s is not None for s in sources):
            return {"relu_sources": frozenset().union(*sources),
                    "path": tuple(n for t in inputs for n in t.path)}
        return {"relu_sources": None}

    def as_map(self, node: str, name: str, t: Tensor) -> Tensor:
        """The (1, L, C) map of the 1-D tensor ``name`` (held as ``t``), for a 1-D
        layer: a Reshape layer is added the first time an (L, C) tensor (the
        model input, or a Dense layer on it) is read so."""
        if len(t.shape) == 3:
            return t
        out = f"{name}#map"
        if out not in self.tensors:
            self.consumers[out] = self.consumers.get(name, 0)  # its readers read the map instead
            layer = self.unique_name(sanitize_name(name, "input") + "_1d")
            self.add(node, out, "Reshape", {"target_shape": [1, *t.shape]}, [t], name=layer, one_d=True)
        return self.tensors[out]

    def alias(self, out: str, t: Tensor, node: str | None = None) -> Tensor:
        """``out`` carries the same values as ``t`` (dropout, identity, no-op reshape)."""
        if node:
            self.log.append(f"{node} -> nothing (the identity at inference)")
        if t.relu_sources:
            t = dataclasses.replace(t, path=t.path + (out,))
        self.tensors[out] = t
        return t

    def add_tensors(self, node: str, out: str, inputs: list, name: Optional[str] = None) -> Tensor:
        """``out`` = the sum of ``inputs`` (layer outputs of one shape): an Add layer
        (SEMANTICS.md "Add") whose activation a following ReLU decides."""
        if len(inputs) < 2:
            raise ModelError(f"{self.what} '{node}': an addition needs two or more layer outputs")
        orders = [t.order for t in inputs]
        if any((o is None) != (orders[0] is None) or (o is not None and not np.array_equal(o, orders[0]))
               for o in orders):
            raise ModelError(f"{self.what} '{node}': adds flattened feature maps whose element orders "
                             "differ; add them before flattening")
        for t in inputs:
            if t.open_layer is not None:   # a raw Conv/Dense output: a residual branch
                self._check_movable(node, t, f"use layer '{t.open_layer}' as a residual branch")
                self._layer_dict(t.open_layer)["activation"] = "linear"
            elif t.relu_sources:
                raise ModelError(f"{self.what} '{node}': an addend comes from layer(s) "
                                 f"{sorted(t.relu_sources)} without activation through other layers; "
                                 "only a Conv/Dense output read by the addition alone can be a residual branch")
        t = self.add(node, out, "Add", {}, inputs, order=orders[0], name=name)
        self.log[-1] += ": " + ", ".join(
            f"'{i.layer}' ({'branch' if i.open_layer else 'identity'})" for i in inputs)
        # the Add's activation is still open: a following ReLU (or Clip) merges into it
        t = dataclasses.replace(t, relu_sources=frozenset([t.layer]), path=(out,))
        self.tensors[out] = t
        return t

    # -------------------------------------------------------------- merges
    def describe(self, t: Tensor) -> str:
        if t.layer == INPUT_NAME:
            return "the model input"
        d = self._layer_dict(t.layer)
        act = f", activation {d['activation']}" if "activation" in d else ""
        return f"layer '{t.layer}' ({d['type']}{act})"

    def _open(self, node: str, t: Tensor, what: str) -> str:
        if t.open_layer is None:
            raise ModelError(f"{self.what} '{node}': {what} must directly follow a Conv/Dense "
                             f"layer without activation, but its input comes from {self.describe(t)}")
        self._check_movable(node, t, f"merge the {what} into layer '{t.open_layer}'")
        return t.open_layer

    def _out_channels(self, layer: str) -> int:
        return self.spec(layer).output_shape[-1]

    def fold_batchnorm(self, node: str, out: str, t: Tensor, gamma, beta, mean, var,
                       epsilon: float) -> Tensor:
        """Fold y = gamma * (x - mean) / sqrt(var + eps) + beta into the layer before."""
        layer = self._open(node, t, "batch normalization")
        channels = self._out_channels(layer)
        params = [np.asarray(p, np.float64).reshape(-1) for p in (gamma, beta, mean, var)]
        for label, p in zip(("scale", "offset", "mean", "variance"), params):
            if p.shape != (channels,):
                raise ModelError(f"{self.what} '{node}': batch-norm {label} has {p.size} values, "
                                 f"expected {channels} (the channels of layer '{layer}')")
        gamma, beta, mean, var = params
        scale = gamma / np.sqrt(var + float(epsilon))
        w = self.weights[layer]
        w["kernel"] = w["kernel"] * scale.reshape(w["kernel"].shape[2:] if
                                                  self.spec(layer).type == "DepthwiseConv2D" else -1)
        bias = w["bias"] if w["bias"] is not None else np.zeros(channels)
        w["bias"] = (bias - mean) * scale + beta
        self._layer_dict(layer)["use_bias"] = True
        self.log.append(f"{node} -> batch norm folded into layer '{layer}'")
        return self._reopen(out, t)

    def add_bias(self, node: str, out: str, t: Tensor, bias) -> Tensor:
        """Merge ``+ bias`` (one value per channel) into the layer before."""
        layer = self._open(node, t, "bias addition")
        w = self.weights[layer]
        bias = np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), (self._out_channels(layer),))
        w["bias"] = bias if w["bias"] is None else w["bias"] + bias
        self._layer_dict(layer)["use_bias"] = True
        self.log.append(f"{node} -> bias added to layer '{layer}'")
        return self._reopen(out, t)

    def _reopen(self, out: str, t: Tensor) -> Tensor:
        t = dataclasses.replace(t, path=(out,))
        self.tensors[out] = t
        return t

    def clipped_relu(self, node: str, out: str, t: Tensor, max_value: float) -> Tensor:
        """Apply ``min(max(x, 0), max_value)`` (ReLU6, Clip(0, c)) by merging it into the
        layer(s) that produce ``t`` (through layers that commute with it, as a ReLU)."""
        if not t.relu_sources:
            raise ModelError(f"{self.what} '{node}': a clipped ReLU (max {max_value:g}) must follow a "
                             f"Conv/Dense layer without activation (directly or through max pooling, "
                             f"flatten, reshape, padding, upsampling or concatenation), but its input "
                             f"comes from {self.describe(t)}")
        self._check_movable(node, t, f"move the clipped ReLU into layer(s) {sorted(t.relu_sources)}")
        for layer in t.relu_sources:
            d = self._layer_dict(layer)
            d["activation"], d["max_value"] = "relu", float(max_value)
        self.log.append(f"{node} -> clipped ReLU (max {max_value:g}) of layer(s) "
                        f"{', '.join(map(repr, sorted(t.relu_sources)))}")
        t = dataclasses.replace(t, relu_sources=frozenset(), path=(), open_layer=None)
        self.tensors[out] = t
        return t

    def activation(self, node: str, out: str, t: Tensor, act: str) -> Tensor:
        """Apply 'relu', 'softmax' or 'linear' to ``t`` by merging it into a layer."""
        if act == "linear":
            return self.alias(out, t)
        if act == "softmax":
            layer = self._open(node, t, "softmax")
            self._layer_dict(layer)["activation"] = "softmax"
            self.log.append(f"{node} -> softmax output of layer '{layer}'")
            t = dataclasses.replace(t, relu_sources=None, path=(), open_layer=None)
            self.tensors[out] = t
            return t
        if act != "relu":
            raise ModelError(f"{self.what} '{node}': activation {act!r} is not supported "
                             "(only relu, softmax and linear)")
        if t.relu_sources == frozenset():   # already non-negative: the ReLU is the identity
            self.log.append(f"{node} -> nothing (its input is already non-negative)")
            return self.alias(out, t)
        if t.relu_sources is None:
            raise ModelError(f"{self.what} '{node}': a ReLU must follow a Conv/Dense layer "
                             f"(directly or through max pooling, flatten, reshape, padding or "
                             f"concatenation), but its input comes from {self.describe(t)}")
        self._check_movable(node, t, f"move the ReLU into layer(s) {sorted(t.relu_sources)}")
        for layer in t.relu_sources:
            self._layer_dict(layer)["activation"] = "relu"
        self.log.append(f"{node} -> ReLU of layer(s) {', '.join(map(repr, sorted(t.relu_sources)))}")
        t = dataclasses.replace(t, relu_sources=frozenset(), path=(), open_layer=None)
        self.tensors[out] = t
        return t

    # -------------------------------------------------------------- result
    def finish(self, output: str, metadata: dict) -> Model:
        """Check the graph ends in one output layer and build the Model."""
        t = self.tensor(output, "graph output")
        if t.layer == INPUT_NAME:
            raise ModelError("the graph output is the model input itself; there is nothing to convert")
        last = self.layers[-1]["name"]
        if t.layer != last:
            raise ModelError(f"the graph output is produced by layer '{t.layer}', but layer "
                             f"'{last}' comes after it and feeds no output")
        if t.order is not None:
            raise ModelError(f"the graph output (layer '{t.layer}') is a flattened channels-first "
                             "feature map; its element order cannot be reproduced channels-last")
        linear_hidden = []
        for d in self.layers:
            if (d["type"] in WEIGHTED_TYPES or d["type"] == "Add") and "activation" not in d:
                if d["name"] == last:
                    d["activation"] = "linear"
                else:
                    linear_hidden.append(d["name"])
        if linear_hidden:
            raise ModelError(f"hidden layer(s) {', '.join(map(repr, linear_hidden))} have no ReLU "
                             "after them; the model format needs a ReLU after every hidden "
                             "Conv/Dense layer and addition (only the output layer, and a Conv/Dense "
                             "read only by an addition, may be linear)")
        weights = {k: {"kernel": v["kernel"].astype(np.float32),
                       "bias": None if v["bias"] is None else v["bias"].astype(np.float32)}
                   for k, v in self.weights.items()}
        return Model(list(self.input_shape), self.layers, weights, dict(metadata, import_log=self.log))
