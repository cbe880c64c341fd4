"""Fan-out, fan-in and operation counts in two conventions (SEMANTICS.md).

``exact``: the real number of connections of every neuron (borders of
'same' padding, strides, dilation and depth multipliers as they are).
``snntoolbox``: the original toolbox's approximate formulas, reproduced
literally (including its use of kernel_size[0] as the width in strided
fan-out arrays), so that its synaptic-operation counts can be compared.

Fan-outs are per-neuron float64 arrays of the producing layer's shape; the
synaptic operations of a step are the sum of the fan-outs of the neurons
whose spike-train record is non-zero at that step.
"""
from __future__ import annotations

import numpy as np

from .layers import LayerSpec, concat_axis
from .model import INPUT_NAME, Model

CONVENTIONS = ("exact", "snntoolbox")


# ------------------------------------------------------------------ exact
def _window_hits(spec: LayerSpec, kernel, strides, dilation) -> np.ndarray:
    """(h, w) number of (output position, tap) pairs reading each input cell."""
    h, w = spec.input_shape[:2]
    pt, pb, pl, pr = spec.pads
    oh, ow = spec.output_shape[:2]
    hits = np.zeros((h + pt + pb, w + pl + pr))
    for ky in range(kernel[0]):
        y0 = ky * dilation[0]
        for kx in range(kernel[1]):
            x0 = kx * dilation[1]
            hits[y0:y0 + (oh - 1) * strides[0] + 1:strides[0],
                 x0:x0 + (ow - 1) * strides[1] + 1:strides[1]] += 1
    return hits[pt:pt + h, pl:pl + w]


def input_connections(spec: LayerSpec) -> np.ndarray:
    """Exact number of connections from each input element of a spiking layer."""
    shape = spec.input_shape
    c = spec.config
    if spec.type == "Dense":
        return np.full(shape, float(c["units"]))
    if spec.type in ("AveragePooling2D", "MaxPooling2D"):
        hits = _window_hits(spec, c["pool_size"], c["strides"], (1, 1))
        per_channel = 1
    else:
        hits = _window_hits(spec, c["kernel_size"], c["strides"], c["dilation_rate"])
        per_channel = c["filters"] if spec.type == "Conv2D" else c["depth_multiplier"]
    return np.repeat(hits[:, :, None] * per_channel, shape[2], axis=2)


def _back_through(spec: LayerSpec, counts: np.ndarray) -> list:
    """Split a structural layer's per-output counts onto its inputs."""
    if spec.type in ("Flatten", "Reshape"):
        return [counts.reshape(spec.input_shape)]
    if spec.type == "ZeroPadding2D":
        (top, _), (left, _) = spec.config["padding"]
        h, w = spec.input_shape[:2]
        return [counts[top:top + h, left:left + w]]
    if spec.type == "UpSampling2D":   # each input cell feeds its sh x sw copies
        (h, w, c), (sh, sw) = spec.input_shape, spec.config["size"]
        return [counts.reshape(h, sh, w, sw, c).sum(axis=(1, 3))]
    axis = concat_axis(spec)
    bounds = np.cumsum([s[axis] for s in spec.input_shapes])[:-1]
    return np.split(counts, bounds, axis=axis)


def exact_fanouts(model: Model) -> dict:
    """name -> per-neuron fan-out (float64, layer shape) for the input and spiking layers."""
    fanout = {INPUT_NAME: np.zeros(model.input_shape)}
    fanout.update({s.name: np.zeros(s.output_shape) for s in model.layers})
    by_name = {s.name: s for s in model.layers}
    for spec in reversed(model.layers):  # consumers before producers
        if spec.is_structural:
            parts = _back_through(spec, fanout[spec.name])
        elif spec.is_add:   # an identity inbound: element i reaches neuron i; a branch counts its own
            parts = [np.zeros(spec.output_shape) if n != INPUT_NAME and by_name[n].is_branch
                     else np.ones(spec.output_shape) for n in spec.inbound]
        else:
            parts = [input_connections(spec)]
        for src, part in zip(spec.inbound, parts):
            fanout[src] += part
    return {n: f for n, f in fanout.items() if n == INPUT_NAME or by_name[n].is_spiking}


def exact_fanins(model: Model) -> dict:
    """name -> total number of incoming connections of a spiking layer (an Add's:
    those of its weighted branches plus one per element of each identity inbound)."""
    out = {}
    for s in model.spiking_layers:
        if s.is_add:
            out[s.name] = float(sum(input_connections(b).sum() if b is not None else s.size
                                    for b in _add_branches(model, s)))
        else:
            out[s.name] = float(input_connections(s).sum())
    return out


def _add_branches(model: Model, spec: LayerSpec) -> list:
    """An Add's weighted branch per inbound (None for an identity inbound)."""
    return [model.layer(n) if n != INPUT_NAME and model.layer(n).is_branch else None for n in spec.inbound]


# ------------------------------------------------------------- snntoolbox
def _spiking_outbound(model: Model, name: str) -> list:
    out = []
    for spec in model.layers:
        if name in spec.inbound:
            out += [spec] if spec.is_spiking or spec.is_branch else _spiking_outbound(model, spec.name)
    return out


def _toolbox_fanout_array(pre_shape, post: LayerSpec, depthwise: bool) -> np.ndarray:
    """The toolbox's get_fanout_array, transcribed (kx is kernel_size[0])."""
    ny, nx, nz = post.output_shape
    kx, ky = post.config["kernel_size"]
    px = (kx - 1) // 2 if post.config["padding"] == "same" else 0
    py = (ky - 1) // 2 if post.config["padding"] == "same" else 0
    sy, sx = post.config["strides"]
    fanout = np.zeros(pre_shape)
    for y_pre in range(pre_shape[0]):
        y_post = [(y_pre + py) // sy]
        wy = (y_pre + py) % sy
        i = 1
        while wy + i * sy < ky:
            if 0 <= y_post[0] - i < ny:
                y_post.append(y_post[0] - i)
            i += 1
        for x_pre in range(pre_shape[1]):
            x_post = [(x_pre + px) // sx]
            wx = (x_pre + px) % sx
            i = 1
            while wx + i * sx < kx:
                if 0 <= x_post[0] - i < nx:
                    x_post.append(x_post[0] - i)
                i += 1
            fanout[y_pre, x_pre, :] = len(x_post) * len(y_post)
    return fanout if depthwise else fanout * nz


def snntoolbox_fanouts(model: Model) -> dict:
    """name -> fan-out as the toolbox computes it, broadcast to the layer shape."""
    result = {}
    for name in [INPUT_NAME] + [s.name for s in model.spiking_layers]:
        shape = model.shape_of(name)
        fanout = np.zeros(shape)
        for nxt in _spiking_outbound(model, name):
            c = nxt.config
            strided = nxt.type in ("Conv2D", "DepthwiseConv2D") and c["strides"] != (1, 1)
            if nxt.type == "Dense":
                fanout += c["units"]
            elif nxt.type in ("AveragePooling2D", "MaxPooling2D") or nxt.is_add:  # (an Add: identity)
                fanout += 1
            elif strided:
                if len(shape) != 3:
                    raise ValueError(f"toolbox fan-out into strided '{nxt.name}' needs a 3-D layer '{name}'")
                fanout += _toolbox_fanout_array(shape, nxt, nxt.type == "DepthwiseConv2D")
            elif nxt.type == "DepthwiseConv2D":
                fanout += np.prod(c["kernel_size"])
            else:
                fanout += np.prod(c["kernel_size"]) * c["filters"]
        result[name] = fanout
    return result


def snntoolbox_fanins(model: Model) -> dict:
    def fan_in(s: LayerSpec) -> float:
        if s.type in ("Conv2D", "DepthwiseConv2D"):
            return float(np.prod(s.config["kernel_size"]) * s.input_shape[-1])
        if s.type == "Dense":
            return float(s.input_shape[0])
        return 0.0

    out = {}
    for s in model.spiking_layers:
        # (an Add, which the toolbox lacks: its branches' fan-ins, 1 per identity inbound)
        fan = sum(fan_in(b) if b is not None else 1.0 for b in _add_branches(model, s)) if s.is_add \
            else fan_in(s)
        out[s.name] = fan * s.size  # neurons * fan-in
    return out


# ------------------------------------------------------------------ public
def fanouts(model: Model, convention: str) -> dict:
    if convention == "exact":
        return exact_fanouts(model)
    if convention == "snntoolbox":
        return snntoolbox_fanouts(model)
    raise ValueError(f"ops_convention must be one of {list(CONVENTIONS)}, got {convention!r}")


def _biased_neurons(model: Model) -> int:
    return sum(s.size for s in model.layers
               if s.is_weighted and model.weights[s.name]["bias"] is not None
               and np.any(model.weights[s.name]["bias"] != 0))


def ann_operations(model: Model, convention: str) -> float:
    """2 * sum(neurons * fan-in) + neurons of layers with a non-zero bias."""
    connections = exact_fanins(model) if convention == "exact" else snntoolbox_fanins(model)
    return 2.0 * sum(connections.values()) + _biased_neurons(model)


def ann_operations_as_trained(model: Model, convention: str) -> float:
    """Operations of one forward pass of the ANN as trained, the fair reference
    for the SNN's synaptic operations: the count recorded before average pooling
    was folded into the next layer's weights (folding enlarges the ANN that the
    SNN mirrors), else this model's own."""
    recorded = model.metadata.get("ann_operations_before_folding", {}).get(convention)
    return float(recorded) if recorded is not None else ann_operations(model, convention)


def ann_macs_as_trained(model: Model, convention: str) -> float:
    """Multiply-accumulates of one forward pass of the ANN as trained (its
    connections; folding pooling changes no bias, so they follow from the
    operations above)."""
    return (ann_operations_as_trained(model, convention) - _biased_neurons(model)) / 2.0
