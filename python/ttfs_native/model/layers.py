"""Layer types of the model folder: field normalisation and shape inference.

Each layer of ``model.json`` becomes a :class:`LayerSpec` with every optional
field filled in (Keras defaults) and its input and output shapes inferred.
Errors raise :class:`ModelError` naming the layer and the bad value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WEIGHTED_TYPES = ("Dense", "Conv2D", "DepthwiseConv2D")
POOLING_TYPES = ("AveragePooling2D", "MaxPooling2D")
STRUCTURAL_TYPES = ("Flatten", "Reshape", "ZeroPadding2D", "Concatenate", "UpSampling2D")
MERGE_TYPES = ("Add",)
LAYER_TYPES = WEIGHTED_TYPES + POOLING_TYPES + STRUCTURAL_TYPES + MERGE_TYPES
ACTIVATIONS = ("relu", "softmax", "linear")
ADD_ACTIVATIONS = ("relu", "linear")

_ALLOWED_FIELDS = {
    "Dense": {"units", "use_bias", "activation", "max_value"},
    "Conv2D": {"filters", "kernel_size", "strides", "padding", "dilation_rate",
               "use_bias", "activation", "max_value"},
    "DepthwiseConv2D": {"kernel_size", "strides", "padding", "depth_multiplier",
                        "dilation_rate", "use_bias", "activation", "max_value"},
    "AveragePooling2D": {"pool_size", "strides", "padding"},
    "MaxPooling2D": {"pool_size", "strides", "padding"},
    "Flatten": set(),
    "Reshape": {"target_shape"},
    "ZeroPadding2D": {"padding"},
    "Concatenate": {"axis"},
    "UpSampling2D": {"size", "interpolation"},
    "Add": {"activation", "max_value", "scales"},
}
_COMMON_FIELDS = {"name", "type", "inbound"}


class ModelError(ValueError):
    """A model folder or model description is invalid."""


Shape = tuple  # tuple[int, ...] without the batch axis


@dataclass
class LayerSpec:
    """One layer with its fields normalised and shapes inferred."""

    name: str
    type: str
    inbound: list
    config: dict
    input_shapes: list = field(default_factory=list)
    output_shape: Shape = ()
    # 2-D geometry for convolutions and pooling: (top, bottom, left, right).
    pads: tuple = (0, 0, 0, 0)
    # A weighted layer with a linear activation read only by an Add: that Add's
    # name (the layer is a branch of it, with no neurons of its own; set by Model).
    merge: str | None = None

    @property
    def is_weighted(self) -> bool:
        return self.type in WEIGHTED_TYPES

    @property
    def is_branch(self) -> bool:
        """A weighted branch of an Add: its synapses feed the Add's neurons."""
        return self.merge is not None

    @property
    def is_add(self) -> bool:
        return self.type == "Add"

    @property
    def is_spiking(self) -> bool:
        """Has spiking neurons (integrates, or max-pools spike trains)."""
        return (self.type in WEIGHTED_TYPES and not self.is_branch) or self.type in POOLING_TYPES \
            or self.is_add

    @property
    def has_activation(self) -> bool:
        return self.type in WEIGHTED_TYPES or self.is_add

    @property
    def is_structural(self) -> bool:
        return self.type in STRUCTURAL_TYPES

    @property
    def activation(self) -> str:
        return self.config.get("activation", "relu")

    @property
    def max_value(self) -> float | None:
        """The clip of a clipped ReLU (ReLU6: 6), None for a plain one."""
        return self.config.get("max_value")

    @property
    def scales(self) -> tuple:
        """An Add's factor per inbound (1 unless normalisation or calibration set them)."""
        return tuple(self.config.get("scales") or (1.0,) * len(self.inbound))

    @property
    def input_shape(self) -> Shape:
        return self.input_shapes[0]

    @property
    def size(self) -> int:
        return int(math.prod(self.output_shape))

    def to_json(self) -> dict:
        out = {"name": self.name, "type": self.type, "inbound": list(self.inbound)}
        for k, v in self.config.items():
            out[k] = [list(p) for p in v] if k == "padding" and self.type == "ZeroPadding2D" \
                else (list(v) if isinstance(v, tuple) else v)
        return out


def _err(name: str, msg: str) -> ModelError:
    return ModelError(f"layer '{name}': {msg}")


def _positive_int(name: str, key: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or int(value) != value:
        raise _err(name, f"'{key}' must be an integer, got {value!r}")
    if value < 1:
        raise _err(name, f"'{key}' must be >= 1, got {value!r}")
    return int(value)


def _pair(name: str, key: str, value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise _err(name, f"'{key}' must be an integer or a pair of integers, got {value!r}")
        return (_positive_int(name, key, value[0]), _positive_int(name, key, value[1]))
    v = _positive_int(name, key, value)
    return (v, v)


def _choice(name: str, key: str, value: Any, allowed: tuple) -> str:
    if value not in allowed:
        raise _err(name, f"'{key}' must be one of {list(allowed)}, got {value!r}")
    return value


def _bool(name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _err(name, f"'{key}' must be true or false, got {value!r}")
    return value


def normalise_config(name: str, type_: str, raw: dict) -> dict:
    """Fill in Keras defaults and check the type of every field."""
    if type_ not in LAYER_TYPES:
        raise _err(name, f"unknown layer type {type_!r}; supported: {', '.join(LAYER_TYPES)}")
    unknown = set(raw) - _ALLOWED_FIELDS[type_] - _COMMON_FIELDS
    if unknown:
        raise _err(name, f"unknown field(s) for {type_}: {', '.join(sorted(unknown))}")
    c: dict = {}
    if type_ == "Dense":
        if "units" not in raw:
            raise _err(name, "Dense needs 'units'")
        c["units"] = _positive_int(name, "units", raw["units"])
    if type_ == "Conv2D":
        if "filters" not in raw:
            raise _err(name, "Conv2D needs 'filters'")
        c["filters"] = _positive_int(name, "filters", raw["filters"])
    if type_ in ("Conv2D", "DepthwiseConv2D"):
        if "kernel_size" not in raw:
            raise _err(name, f"{type_} needs 'kernel_size'")
        c["kernel_size"] = _pair(name, "kernel_size", raw["kernel_size"])
        c["strides"] = _pair(name, "strides", raw.get("strides", 1))
        c["padding"] = _choice(name, "padding", raw.get("padding", "valid"), ("valid", "same"))
        c["dilation_rate"] = _pair(name, "dilation_rate", raw.get("dilation_rate", 1))
        if c["strides"] != (1, 1) and c["dilation_rate"] != (1, 1):
            raise _err(name, "strides > 1 together with dilation_rate > 1 is not supported (as in Keras)")
    if type_ == "DepthwiseConv2D":
        c["depth_multiplier"] = _positive_int(name, "depth_multiplier", raw.get("depth_multiplier", 1))
    if type_ in WEIGHTED_TYPES:
        c["use_bias"] = _bool(name, "use_bias", raw.get("use_bias", True))
        c["activation"] = _choice(name, "activation", raw.get("activation", "relu"), ACTIVATIONS)
        if raw.get("max_value") is not None:
            c["max_value"] = _clip(name, raw["max_value"], c["activation"])
    if type_ == "Add":
        c["activation"] = _choice(name, "activation", raw.get("activation", "relu"), ADD_ACTIVATIONS)
        if raw.get("max_value") is not None:
            c["max_value"] = _clip(name, raw["max_value"], c["activation"])
        if raw.get("scales") is not None:
            c["scales"] = _scales(name, raw["scales"])
    if type_ in POOLING_TYPES:
        c["pool_size"] = _pair(name, "pool_size", raw.get("pool_size", 2))
        strides = raw.get("strides")
        c["strides"] = c["pool_size"] if strides is None else _pair(name, "strides", strides)
        c["padding"] = _choice(name, "padding", raw.get("padding", "valid"), ("valid", "same"))
    if type_ == "Reshape":
        if "target_shape" not in raw:
            raise _err(name, "Reshape needs 'target_shape'")
        ts = raw["target_shape"]
        if not isinstance(ts, (list, tuple)) or not ts or \
                not all(isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1) for v in ts) \
                or sum(v == -1 for v in ts) > 1:
            raise _err(name, f"'target_shape' must be a list of positive integers (at most one -1), got {ts!r}")
        c["target_shape"] = tuple(ts)
    if type_ == "ZeroPadding2D":
        c["padding"] = _zero_padding(name, raw.get("padding", 1))
    if type_ == "UpSampling2D":
        c["size"] = _pair(name, "size", raw.get("size", 2))
        c["interpolation"] = _choice(name, "interpolation", raw.get("interpolation", "nearest"), ("nearest",))
    if type_ == "Concatenate":
        axis = raw.get("axis", -1)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise _err(name, f"'axis' must be an integer, got {axis!r}")
        c["axis"] = axis
    return c


def _clip(name: str, value: Any, activation: str) -> float:
    if activation != "relu":
        raise _err(name, f"'max_value' clips a ReLU; activation is {activation!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise _err(name, f"'max_value' must be a positive number, got {value!r}")
    return float(value)


def _scales(name: str, value: Any) -> tuple:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            and math.isfinite(v) and v > 0 for v in value):
        raise _err(name, f"'scales' must be a list of positive numbers (one per inbound), got {value!r}")
    return tuple(float(v) for v in value)


def _zero_padding(name: str, value: Any) -> tuple:
    def nonneg(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _err(name, f"'padding' entries must be non-negative integers, got {value!r}")
        return v
    if isinstance(value, int) and not isinstance(value, bool):
        v = nonneg(value)
        return ((v, v), (v, v))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return ((nonneg(value[0]),) * 2, (nonneg(value[1]),) * 2)
        if all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
            return ((nonneg(value[0][0]), nonneg(value[0][1])), (nonneg(value[1][0]), nonneg(value[1][1])))
    raise _err(name, f"'padding' must be [[top, bottom], [left, right]], got {value!r}")


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple:
    """TensorFlow's 'same' padding: output ceil(size/stride), extra cell at the end."""
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2, total - total // 2


# A window may reach past the input (padding 'same'), but not absurdly far: every
# backend and the operation counts work on the padded input.
MAX_WINDOW_OVERHANG = 4


def _spatial(spec: LayerSpec, kernel: tuple, strides: tuple, dilation: tuple, padding: str):
    h, w = spec.input_shape[0], spec.input_shape[1]
    for size, k, d, axis in ((h, kernel[0], dilation[0], "height"), (w, kernel[1], dilation[1], "width")):
        extent = (k - 1) * d + 1
        if extent > MAX_WINDOW_OVERHANG * size + 64:
            raise _err(spec.name, f"window {kernel} with dilation {dilation} spans {extent} cells along the "
                                  f"{axis}, far beyond the input's {size}; not supported")
    if padding == "same":
        oh, pt, pb = same_padding(h, kernel[0], strides[0], dilation[0])
        ow, pl, pr = same_padding(w, kernel[1], strides[1], dilation[1])
    else:
        eh = (kernel[0] - 1) * dilation[0] + 1
        ew = (kernel[1] - 1) * dilation[1] + 1
        oh = (h - eh) // strides[0] + 1 if h >= eh else 0
        ow = (w - ew) // strides[1] + 1 if w >= ew else 0
        pt = pb = pl = pr = 0
    if oh < 1 or ow < 1:
        raise _err(spec.name, f"window {kernel} (dilation {dilation}) does not fit the "
                              f"{h}x{w} input with padding '{padding}'")
    spec.pads = (pt, pb, pl, pr)
    return oh, ow


def infer_shape(spec: LayerSpec) -> Shape:
    """Output shape of ``spec`` from its input shapes; sets ``spec.pads``."""
    t, c, name = spec.type, spec.config, spec.name
    if t == "Concatenate":
        return _concat_shape(spec)
    if t == "Add":
        return _add_shape(spec)
    if len(spec.input_shapes) != 1:
        raise _err(name, f"{t} takes exactly one inbound layer, got {len(spec.input_shapes)}")
    shape = spec.input_shape
    if t == "Dense":
        return tuple(shape[:-1]) + (c["units"],)
    if t == "Flatten":
        return (int(math.prod(shape)),)
    if t == "Reshape":
        target = list(c["target_shape"])
        total = int(math.prod(shape))
        if -1 in target:
            known = int(math.prod(v for v in target if v != -1))
            if total % known:
                raise _err(name, f"cannot reshape {shape} into {tuple(c['target_shape'])}")
            target[target.index(-1)] = total // known
        if int(math.prod(target)) != total:
            raise _err(name, f"cannot reshape {shape} ({total} values) into {tuple(target)}")
        return tuple(target)
    if len(shape) != 3:
        raise _err(name, f"{t} needs a (height, width, channels) input, got shape {shape}")
    if t == "ZeroPadding2D":
        (top, bottom), (left, right) = c["padding"]
        return (shape[0] + top + bottom, shape[1] + left + right, shape[2])
    if t == "UpSampling2D":
        return (shape[0] * c["size"][0], shape[1] * c["size"][1], shape[2])
    if t in POOLING_TYPES:
        oh, ow = _spatial(spec, c["pool_size"], c["strides"], (1, 1), c["padding"])
        return (oh, ow, shape[2])
    oh, ow = _spatial(spec, c["kernel_size"], c["strides"], c["dilation_rate"], c["padding"])
    if t == "Conv2D":
        return (oh, ow, c["filters"])
    return (oh, ow, shape[2] * c["depth_multiplier"])  # DepthwiseConv2D


def concat_axis(spec: LayerSpec) -> int:
    """Concatenation axis without the batch axis (Keras counts the batch axis)."""
    rank = len(spec.input_shapes[0])
    axis = spec.config["axis"]
    if axis < 0:
        axis += rank + 1
    if not 1 <= axis <= rank:
        raise _err(spec.name, f"'axis' {spec.config['axis']} is out of range for inputs of rank {rank} "
                              f"(axis 0 is the batch axis)")
    return axis - 1


def _concat_shape(spec: LayerSpec) -> Shape:
    if len(spec.input_shapes) < 2:
        raise _err(spec.name, f"Concatenate needs at least two inbound layers, got {len(spec.input_shapes)}")
    ranks = {len(s) for s in spec.input_shapes}
    if len(ranks) != 1:
        raise _err(spec.name, f"inputs of different ranks cannot be concatenated: {spec.input_shapes}")
    axis = concat_axis(spec)
    first = spec.input_shapes[0]
    for s in spec.input_shapes[1:]:
        if any(a != b for i, (a, b) in enumerate(zip(first, s)) if i != axis):
            raise _err(spec.name, f"input shapes {spec.input_shapes} differ outside axis {spec.config['axis']}")
    out = list(first)
    out[axis] = sum(s[axis] for s in spec.input_shapes)
    return tuple(out)


def _add_shape(spec: LayerSpec) -> Shape:
    if len(spec.input_shapes) < 2:
        raise _err(spec.name, f"Add needs at least two inbound layers, got {len(spec.input_shapes)}")
    if len(set(spec.inbound)) != len(spec.inbound):
        raise _err(spec.name, f"Add reads a layer twice ({spec.inbound}); scale it instead")
    if any(s != spec.input_shapes[0] for s in spec.input_shapes):
        raise _err(spec.name, f"Add needs inputs of one shape, got {spec.input_shapes}")
    if "scales" in spec.config and len(spec.config["scales"]) != len(spec.inbound):
        raise _err(spec.name, f"'scales' has {len(spec.config['scales'])} entries for "
                              f"{len(spec.inbound)} inbound layers")
    return tuple(spec.input_shapes[0])


def expected_weight_shapes(spec: LayerSpec) -> tuple:
    """(kernel shape, bias shape or None) in Keras layouts."""
    c = spec.config
    in_ch = spec.input_shape[-1]
    if spec.type == "Dense":
        kernel = (in_ch, c["units"])
    elif spec.type == "Conv2D":
        kernel = tuple(c["kernel_size"]) + (in_ch, c["filters"])
    else:
        kernel = tuple(c["kernel_size"]) + (in_ch, c["depth_multiplier"])
    bias = (spec.output_shape[-1],) if c["use_bias"] else None
    return kernel, bias
