"""Lower a Model to the native backends' node list (csrc/core/network.h).

Node 0 is the input; then one node per layer, in the model's order. The
structural layers become Gather nodes whose index map is computed here by
applying the layer's own numpy operation to element indices, so the native
code never needs to know what Flatten, Reshape, ZeroPadding2D or
Concatenate mean. An Add becomes one *open* node per synapse group
(model/residual.py: a weighted branch with its scaled kernel, an identity
inbound as a 1x1 depthwise convolution by its scale), right before the Add
node, whose neurons integrate them all.
"""
from __future__ import annotations

import numpy as np

from ..model import INPUT_NAME, Model, ops
from ..model.layers import LayerSpec
from ..model.residual import add_bias, add_groups

_F32 = np.zeros(0, np.float32)


def _hw_c(shape) -> tuple:
    """A shape as (height, width, channels); Dense acts on the last axis."""
    if len(shape) == 3:
        return tuple(shape)
    positions = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return (1, positions, shape[-1])


def geometry(spec: LayerSpec) -> dict:
    """The fields of the core's Geometry for a weighted or pooling layer (the rest keep their defaults)."""
    ih, iw, ic = _hw_c(spec.input_shape)
    oh, ow, oc = _hw_c(spec.output_shape)
    c = spec.config
    kernel = c.get("kernel_size", c.get("pool_size", (1, 1)))
    strides = c.get("strides", (1, 1))
    dilation = c.get("dilation_rate", (1, 1))
    multiplier = {"Dense": c.get("units"), "Conv2D": c.get("filters"),
                  "DepthwiseConv2D": c.get("depth_multiplier")}.get(spec.type) or 1
    return dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, kernel_h=kernel[0], kernel_w=kernel[1],
                stride_h=strides[0], stride_w=strides[1], dilation_h=dilation[0], dilation_w=dilation[1],
                pad_top=spec.pads[0], pad_left=spec.pads[2], multiplier=multiplier)


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


def build_network(core, model: Model, fanouts: dict, weights: dict | None = None, input_spikes: bool = False,
                  stochastic_softmax: bool = True, group_kernels: dict | None = None):
    """A ``_core.Network`` for ``model`` with per-neuron fan-outs for synaptic-op counting.

    weights: per layer name, (kernel, bias or None) to hand over instead of the
    model's (the window coding's ramp weights); group_kernels: per Add, the
    kernel of each synapse group instead of the model's. input_spikes: the input node
    carries its fan-outs (a spiking input). stochastic_softmax=False: a softmax
    output is handed over as a plain layer (a coding that reads its membrane).
    """
    net = core.Network()
    index = {INPUT_NAME: 0}
    size = {INPUT_NAME: model.input_size}
    ih, iw, ic = _hw_c(model.input_shape)
    input_fanout = np.asarray(fanouts[INPUT_NAME], np.float64).reshape(-1) if input_spikes else np.zeros(0)
    net.add_node(core.NodeKind.Input, INPUT_NAME, [],
                 core.Geometry(in_h=ih, in_w=iw, in_c=ic, out_h=ih, out_w=iw, out_c=ic), model.input_size,
                 False, _F32, _F32, _F32, np.zeros(0, np.int32), np.zeros(0, np.int64), input_fanout)
    out = model.output_layer
    empty = (_F32, _F32, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    for spec in model.layers:
        if spec.is_branch:   # emitted with its Add, as an open node
            continue
        if spec.is_add:
            inbound = []
            for k, group in enumerate(add_groups(model, spec)):
                layer, kernel = group.layer, group.kernel
                if group_kernels is not None:
                    kernel = group_kernels[spec.name][k]
                if layer is None:   # identity: a 1x1 depthwise convolution by the scale
                    h, w, c = _hw_c(spec.output_shape)
                    kind, kernel = core.NodeKind.DepthwiseConv2D, kernel.reshape(1, 1, c, 1)
                    geom = core.Geometry(in_h=h, in_w=w, in_c=c, out_h=h, out_w=w, out_c=c)
                else:
                    kind, geom = getattr(core.NodeKind, layer.type), core.Geometry(**geometry(layer))
                net.add_node(kind, f"{spec.name}/{k}", [index[group.source]], geom, spec.size, False,
                             np.ascontiguousarray(kernel, np.float32), *empty, open=True)
                inbound.append(net.num_nodes - 1)
            h, w, c = _hw_c(spec.output_shape)
            bias = add_bias(model, spec)
            net.add_node(core.NodeKind.Add, spec.name, inbound,
                         core.Geometry(in_h=h, in_w=w, in_c=c, out_h=h, out_w=w, out_c=c), spec.size, False,
                         _F32, _F32 if bias is None else bias, _F32, np.zeros(0, np.int32), np.zeros(0, np.int64),
                         np.asarray(fanouts[spec.name], np.float64).reshape(-1))
            index[spec.name] = net.num_nodes - 1
            size[spec.name] = spec.size
            continue
        inbound = [index[n] for n in spec.inbound]
        kernel = bias = pool_count = _F32
        slot, element = np.zeros(0, np.int32), np.zeros(0, np.int64)
        fanout = np.zeros(0)
        if spec.is_structural:
            kind = core.NodeKind.Gather
            slot, element = gather_map(spec, [size[n] for n in spec.inbound])
            geom = core.Geometry()  # (a gather has no geometry: the index map says it all)
        else:
            kind = getattr(core.NodeKind, spec.type)
            geom = core.Geometry(**geometry(spec))
            fanout = np.asarray(fanouts[spec.name], np.float64).reshape(-1)
            if spec.is_weighted:
                kernel, bias = (weights or {}).get(spec.name) or (model.weights[spec.name]["kernel"],
                                                                   model.weights[spec.name]["bias"])
                bias = bias if bias is not None else _F32
            if spec.type == "AveragePooling2D":
                pool_count = ops.pool_cell_counts(spec).reshape(-1)
        softmax = stochastic_softmax and spec is out and spec.is_weighted and spec.activation == "softmax"
        net.add_node(kind, spec.name, inbound, geom, spec.size, softmax, kernel, bias, pool_count,
                     slot, element, fanout)
        index[spec.name] = net.num_nodes - 1
        size[spec.name] = spec.size
    return net
