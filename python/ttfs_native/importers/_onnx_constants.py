"""Constant folding for the small shape computations ONNX exporters leave behind.

``x.view(x.size(0), -1)`` exported with a dynamic batch axis becomes
Shape -> Gather -> Unsqueeze -> Concat -> Reshape. The importer evaluates such
chains on constants. The batch size is not known, so ``Shape`` yields the
:data:`BATCH` marker in its first element (arrays holding it have dtype
object); ``Reshape`` then recognises it as "keep the batch axis".
"""
from __future__ import annotations

import numpy as np

from ..model.layers import ModelError


class _Batch:
    """Marker for the (unknown) batch size inside folded shape arrays."""

    def __repr__(self) -> str:
        return "N"


BATCH = _Batch()

# Operators evaluated here when all their inputs are constants.
FOLDABLE = ("Identity", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice",
            "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "ConstantOfShape")


def node_attributes(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def constant_node_value(node) -> np.ndarray:
    """The value of a Constant node."""
    from onnx import numpy_helper
    a = node_attributes(node)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype)
    raise ModelError(f"ONNX node '{node.name}': Constant with attribute(s) "
                     f"{sorted(a)} is not supported (expected value, value_float(s) or value_int(s))")


def _axes(node, attrs: dict, inputs: list, position: int):
    """Axes given as an attribute (older opsets) or as an input (opset 13+)."""
    if len(inputs) > position and inputs[position] is not None:
        return [int(v) for v in np.asarray(inputs[position]).reshape(-1)]
    return attrs.get("axes")


def fold(node, inputs: list, opset: int) -> np.ndarray:
    """Evaluate ``node`` on constant ``inputs`` (None for an omitted optional input)."""
    op, a = node.op_type, node_attributes(node)
    x = inputs[0] if inputs else None
    try:
        if op == "Identity":
            return x
        if op == "Gather":
            return np.take(x, np.asarray(inputs[1]).astype(np.int64), axis=a.get("axis", 0))
        if op == "Unsqueeze":
            return np.expand_dims(x, tuple(_axes(node, a, inputs, 1)))
        if op == "Squeeze":
            axes = _axes(node, a, inputs, 1)
            return np.squeeze(x, axis=None if axes is None else tuple(axes))
        if op == "Concat":
            return np.concatenate([np.atleast_1d(v) for v in inputs], axis=a["axis"])
        if op == "Cast":
            if x.dtype == object:  # holds BATCH: keep the integers as they are
                return x
            from onnx import helper
            return x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))
        if op == "Slice":
            return _slice(a, inputs, opset)
        if op == "Reshape":  # F.pad computes its pads this way
            shape = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
            if not a.get("allowzero", 0):
                shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return np.reshape(x, shape)
        if op == "Transpose":
            return np.transpose(x, a.get("perm"))
        if op in ("Add", "Sub", "Mul", "Div"):
            y = inputs[1]
            if op == "Div" and np.asarray(x).dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu":
                return np.trunc(np.asarray(x) / y).astype(np.asarray(x).dtype)  # ONNX truncates
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](x, y)
        if op == "ConstantOfShape":
            from onnx import numpy_helper
            value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            return np.full([int(v) for v in x], value.reshape(-1)[0], value.dtype)
    except (TypeError, ValueError, IndexError, KeyError) as e:  # AxisError is a ValueError
        raise ModelError(f"ONNX node '{node.name}': cannot evaluate {op} on constant inputs: {e}") from None
    raise ModelError(f"ONNX node '{node.name}': {op} cannot be folded")


def _slice(a: dict, inputs: list, opset: int) -> np.ndarray:
    x = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 else None
        steps = inputs[4] if len(inputs) > 4 else None
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    ends = [int(v) for v in np.asarray(ends).reshape(-1)]
    axes = list(range(len(starts))) if axes is None else [int(v) for v in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).reshape(-1)]
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]
