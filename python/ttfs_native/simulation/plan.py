"""Lower a Model to the native backends' node list (csrc/core/network.h).

Node 0 is the input; then one node per layer, in the model's order. The
structural layers become Gather nodes whose index map is computed here by
applying the layer's own numpy operation to element indices, so the native
code never needs to know what Flatten, Reshape, ZeroPadding2D or
Concatenate mean.
"""
from __future__ import annotations

import numpy as np

from ..model import INPUT_NAME, Model, ops
from ..model.layers import LayerSpec

KIND = {"input": 0, "Dense": 1, "Conv2D": 2, "DepthwiseConv2D": 3,
        "AveragePooling2D": 4, "MaxPooling2D": 5, "gather": 6}

_F32 = np.zeros(0, np.float32)


def _hw_c(shape) -> tuple:
    """A shape as (height, width, channels); Dense acts on the last axis."""
    if len(shape) == 3:
        return tuple(shape)
    positions = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return (1, positions, shape[-1])


def geometry(spec: LayerSpec) -> list:
    """[in_h, in_w, in_c, out_h, out_w, out_c, kh, kw, sh, sw, dh, dw, pad_top, pad_left, multiplier]."""
    ih, iw, ic = _hw_c(spec.input_shape)
    oh, ow, oc = _hw_c(spec.output_shape)
    c = spec.config
    kernel = c.get("kernel_size", c.get("pool_size", (1, 1)))
    strides = c.get("strides", (1, 1))
    dilation = c.get("dilation_rate", (1, 1))
    multiplier = {"Dense": c.get("units"), "Conv2D": c.get("filters"),
                  "DepthwiseConv2D": c.get("depth_multiplier")}.get(spec.type) or 1
    return [ih, iw, ic, oh, ow, oc, kernel[0], kernel[1], strides[0], strides[1],
            dilation[0], dilation[1], spec.pads[0], spec.pads[2], multiplier]


def gather_map(spec: LayerSpec, inbound_sizes: list) -> tuple:
    """(inbound slot, element) per output element of a structural layer; slot -1 = zero."""
    offsets = np.concatenate([[0], np.cumsum(inbound_sizes)])
    # Global index + 1, pushed through the layer itself (padding yields 0).
    tagged = [(offsets[k] + np.arange(size, dtype=np.float64) + 1).reshape((1,) + shape)
              for k, (size, shape) in enumerate(zip(inbound_sizes, spec.input_shapes))]
    flat = ops.structural(spec, tagged).reshape(-1).astype(np.int64) - 1
    slot = np.where(flat < 0, -1, np.searchsorted(offsets, flat, side="right") - 1).astype(np.int32)
    element = np.where(flat < 0, 0, flat - offsets[np.maximum(slot, 0)]).astype(np.int64)
    return slot, element


def build_network(core, model: Model, fanouts: dict):
    """A ``_core.Network`` for ``model`` with per-neuron fan-outs for synaptic-op counting."""
    net = core.Network()
    index = {INPUT_NAME: 0}
    size = {INPUT_NAME: model.input_size}
    ih, iw, ic = _hw_c(model.input_shape)
    net.add_node(KIND["input"], INPUT_NAME, [], [ih, iw, ic, ih, iw, ic] + [1] * 6 + [0, 0, 1],
                 model.input_size, False, _F32, _F32, _F32, np.zeros(0, np.int32),
                 np.zeros(0, np.int64), np.zeros(0))
    out = model.output_layer
    for spec in model.layers:
        inbound = [index[n] for n in spec.inbound]
        kernel = bias = pool_count = _F32
        slot, element = np.zeros(0, np.int32), np.zeros(0, np.int64)
        fanout = np.zeros(0)
        if spec.is_structural:
            kind = KIND["gather"]
            slot, element = gather_map(spec, [size[n] for n in spec.inbound])
            geom = [1, 1, 1, 1, 1, 1] + [1] * 6 + [0, 0, 1]
        else:
            kind = KIND[spec.type]
            geom = geometry(spec)
            fanout = np.asarray(fanouts[spec.name], np.float64).reshape(-1)
            if spec.is_weighted:
                w = model.weights[spec.name]
                kernel = w["kernel"]
                bias = w["bias"] if w["bias"] is not None else _F32
            if spec.type == "AveragePooling2D":
                pool_count = ops.pool_cell_counts(spec).reshape(-1)
        softmax = spec is out and spec.is_weighted and spec.activation == "softmax"
        net.add_node(kind, spec.name, inbound, geom, spec.size, softmax, kernel, bias, pool_count,
                     slot, element, fanout)
        index[spec.name] = len(index)
        size[spec.name] = spec.size
    return net
