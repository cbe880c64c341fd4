"""Graph transforms of a Model: the same ANN in another form.

* ``softmax_to_relu``: SNN Toolbox's option of that name (the output layer
  fires once, deterministically);
* ``fold_average_pooling``: average pooling folded into the weighted layer
  that reads it (the same ANN with fewer spiking layers);
* ``apply_layer_scales`` / ``ann_view``: per-layer threshold scales carried in
  the weights of a calibrated model, and the ANN behind them;
* ``shortcut_inbounds`` / ``apply_shortcut_scales``: the shortcut inbounds of
  each residual Add and a calibrated factor on them (SNN only: ``ann_view``
  undoes it).

Conversion (normalisation, calibration) and simulation both use them; they
depend on nothing but the model.
"""
from __future__ import annotations

import math

import numpy as np

from .connectivity import CONVENTIONS, ann_operations
from .model import Model
from .residual import group_source


def softmax_to_relu(model: Model) -> Model:
    """A copy of ``model`` whose softmax output layer uses ReLU (toolbox ``softmax_to_relu``).

    The SNN's output then fires once, deterministically, and the first output
    neuron to fire is the prediction; the ANN's argmax is unchanged wherever
    some output is positive.
    """
    if not (model.output_layer.is_weighted and model.output_layer.activation == "softmax"):
        return model
    relu = model.with_output_activation("relu")
    relu.metadata["softmax_to_relu"] = True
    return relu


def fold_average_pooling(model: Model) -> Model:
    """Fold every foldable AveragePooling2D into the weighted layer that reads it.

    ``conv(avgpool(a))`` is one convolution of ``a`` with a kernel ``pool``
    times larger (each tap spread over its pooling block, divided by the block
    size) and stride ``stride * pool``; zero padding of the pooled map is zero
    padding of ``a`` by whole blocks. ``dense(flatten(avgpool(a)))`` is one
    Dense layer on ``flatten(a)``. The ANN computes exactly the same function
    (up to float32 rounding), but the SNN loses a spiking layer: in the TTFS
    code every spiking layer approximates its ANN layer (its input spikes are
    integrated as ramps, not as values), so fewer layers convert better, at the
    cost of more synaptic operations in the layer that absorbed the pooling.

    Folded: non-overlapping 'valid' pooling (strides == pool_size) whose only
    reader is a Conv2D or DepthwiseConv2D (dilation 1; the pooled map's height
    and width must be multiples of the pool size) or a Flatten read only by a
    Dense layer. Other pooling layers stay as they are.
    """
    layers = [s.to_json() for s in model.layers]
    weights = {n: dict(w) for n, w in model.weights.items()}
    readers: dict = {}
    for spec in model.layers:
        for n in spec.inbound:
            readers.setdefault(n, []).append(spec)
    folded, drop = [], set()
    for spec in model.layers:
        c = spec.config
        if spec.type != "AveragePooling2D" or c["padding"] != "valid" or c["strides"] != c["pool_size"]:
            continue
        if len(readers.get(spec.name, [])) != 1 or spec.name == model.output_layer.name:
            continue
        reader = readers[spec.name][0]
        (sy, sx), (h, w, _) = c["pool_size"], spec.input_shape
        raw = next(r for r in layers if r["name"] == reader.name)
        if reader.type in ("Conv2D", "DepthwiseConv2D") and reader.config["dilation_rate"] == (1, 1) \
                and h % sy == 0 and w % sx == 0:
            kernel = weights[reader.name]["kernel"]
            pt, pb, pl, pr = reader.pads
            new = np.repeat(np.repeat(kernel, sy, axis=0), sx, axis=1) / np.float32(sy * sx)
            weights[reader.name] = {"kernel": new.astype(np.float32), "bias": weights[reader.name]["bias"]}
            raw.update(kernel_size=[new.shape[0], new.shape[1]], padding="valid",
                       strides=[reader.config["strides"][0] * sy, reader.config["strides"][1] * sx])
            if any(reader.pads):
                pad_name = f"{spec.name}_padding"
                layers.insert(layers.index(raw), {"name": pad_name, "type": "ZeroPadding2D",
                                                  "inbound": list(spec.inbound),
                                                  "padding": [[pt * sy, pb * sy], [pl * sx, pr * sx]]})
                raw["inbound"] = [pad_name]
            else:
                raw["inbound"] = list(spec.inbound)
        elif reader.type == "Flatten" and len(readers.get(reader.name, [])) == 1 \
                and readers[reader.name][0].type == "Dense":
            dense = readers[reader.name][0]
            oh, ow, ch = spec.output_shape
            kernel = weights[dense.name]["kernel"].reshape(oh, ow, ch, -1)
            new = np.zeros((h, w, ch, kernel.shape[-1]), np.float32)
            block = np.repeat(np.repeat(kernel, sy, axis=0), sx, axis=1) / np.float32(sy * sx)
            new[:oh * sy, :ow * sx] = block        # rows a 'valid' pooling drops stay zero
            weights[dense.name] = {"kernel": new.reshape(h * w * ch, -1), "bias": weights[dense.name]["bias"]}
            raw["inbound"] = list(spec.inbound)
        else:
            continue
        drop.add(spec.name)
        folded.append(spec.name)
    if not folded:
        return model
    metadata = dict(model.metadata)
    metadata["folded_average_pooling"] = metadata.get("folded_average_pooling", []) + folded
    # the ANN as trained is the fair reference for operation counts
    metadata.setdefault("ann_operations_before_folding",
                        {c: float(ann_operations(model, c)) for c in CONVENTIONS})
    return Model(model.input_shape, [r for r in layers if r["name"] not in drop], weights, metadata)


def apply_layer_scales(model: Model, layer_scales) -> Model:
    """A copy of ``model`` whose weighted layers' and Adds' thresholds are scaled
    by ``k`` (kernel and bias divided by ``k``; an Add's ``scales``)."""
    scales = dict(layer_scales)
    adds = {s.name for s in model.layers if s.is_add}
    branches = {s.name for s in model.layers if s.is_branch}
    unknown = [n for n in scales if (n not in model.weights and n not in adds) or n in branches]
    if unknown:
        raise ValueError(f"layer_scales name unknown or weightless layer(s) (or residual branches, whose "
                         f"threshold is their Add's): {', '.join(unknown)}")
    for name, k in scales.items():
        if not (math.isfinite(float(k)) and float(k) > 0):
            raise ValueError(f"layer_scales['{name}'] must be a positive number, got {k!r}")
    weights = {}
    for name, w in model.weights.items():
        k = np.float32(scales.get(name, 1.0))
        weights[name] = {"kernel": w["kernel"] / k, "bias": None if w["bias"] is None else w["bias"] / k}
    layers = [s.to_json() for s in model.layers]
    for d in layers:   # an Add's threshold: every inbound's factor divided by k
        if d["name"] in adds and d["name"] in scales:
            d["scales"] = [s / float(scales[d["name"]]) for s in model.layer(d["name"]).scales]
    return Model(model.input_shape, layers, weights, dict(model.metadata), model.simulation)


def _spiking_depth(model: Model) -> dict:
    """``{layer name: spiking layers on the longest path from the input to its output}``
    ("input": 0; a residual branch has no neurons and passes its input's depth)."""
    depth = {"input": 0}
    for spec in model.layers:
        d = max(depth[n] for n in spec.inbound)
        depth[spec.name] = d + 1 if spec.is_spiking else d
    return depth


def shortcut_inbounds(model: Model) -> dict:
    """``{Add name: inbound indices}`` of the Adds' *shortcuts*: the synapse groups whose
    source (an identity inbound itself, a weighted branch's input) lies fewer spiking
    layers from the input than the group that lies deepest. In the time code their
    spikes arrive earlier than the other groups' (an identity shortcut of a residual
    block, its 1x1 projection). Adds whose groups all lie equally deep are left out."""
    depth = _spiking_depth(model)
    out = {}
    for spec in model.layers:
        if not spec.is_add:
            continue
        src = [depth[group_source(model, n)] for n in spec.inbound]
        short = tuple(i for i, d in enumerate(src) if d < max(src))
        if short:
            out[spec.name] = short
    return out


def apply_shortcut_scales(model: Model, shortcut_scales) -> Model:
    """A copy of ``model`` whose Adds' shortcut factors (``scales[b]`` of each inbound
    ``b`` in :func:`shortcut_inbounds`) are multiplied by ``alpha`` per Add: an identity
    shortcut's weight, or a projection branch's kernel and bias. This changes what
    the Add computes; a calibrated model records the factors in
    ``metadata["calibration"]["shortcut_scales"]`` and :func:`ann_view` undoes them."""
    alphas = dict(shortcut_scales)
    short = shortcut_inbounds(model)
    unknown = [n for n in alphas if n not in short]
    if unknown:
        raise ValueError(f"shortcut_scales: not a residual Add with a shortcut: {', '.join(unknown)}")
    for name, a in alphas.items():
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not (math.isfinite(a) and a > 0):
            raise ValueError(f"shortcut_scales['{name}'] must be a positive number, got {a!r}")
    layers = [s.to_json() for s in model.layers]
    for d in layers:
        if d["name"] in alphas:
            scales = list(model.layer(d["name"]).scales)
            for b in short[d["name"]]:
                scales[b] = scales[b] * float(alphas[d["name"]])
            d["scales"] = scales
    return Model(model.input_shape, layers, model.weights, dict(model.metadata), model.simulation)


def ann_view(model: Model) -> Model:
    """The ANN behind a calibrated model: its layer threshold scales undone.

    Dividing a layer's kernel and bias by ``k`` only moves that layer's SNN
    threshold, because the next layer receives spikes, not values; the ANN
    forward pass, however, would pass the scaled values on. For ANN
    activations and predictions use this view. It has no calibration record
    and no simulation settings (so taking the view twice changes nothing).
    """
    record = model.metadata.get("calibration", {})
    scales, shortcuts = record.get("layer_threshold_scales"), record.get("shortcut_scales")
    if not scales and not shortcuts:
        return model
    view = apply_layer_scales(model, {name: 1.0 / float(k) for name, k in (scales or {}).items()})
    if shortcuts:
        view = apply_shortcut_scales(view, {name: 1.0 / float(a) for name, a in shortcuts.items()})
    view.metadata.pop("calibration")
    view.simulation = {}
    return view

