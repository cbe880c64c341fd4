"""ONNX nodes that move values without computing new ones: Flatten, Squeeze,
Reshape, Concat, Pad, Resize/Upsample (nearest), on (N, C, H, W) maps and
1-D (N, C, L) tensors (held as (1, L, C) maps). A mixin of the ONNX
converter (onnx_importer.py), which provides ``b`` (the GraphBuilder),
``opset`` and the node helpers ``_layer_input``, ``_const``, ``_need_rank``,
``_map_input`` and ``_name``."""
from __future__ import annotations

import math

import numpy as np

from ..model.layers import ModelError
from ._graph import Tensor
from ._onnx_constants import BATCH


def onnx_shape(t: Tensor) -> tuple:
    """The ONNX (channels-first) sample shape of a tensor: (C, H, W), (C, L) or (features,)."""
    if t.one_d:
        return (t.shape[-1], t.shape[-2])
    return (t.shape[2], t.shape[0], t.shape[1]) if len(t.shape) == 3 else tuple(t.shape)


def _nearest_source(length: int, scale: int, mode: str, rounding: str) -> np.ndarray:
    """The input index each output index of ONNX Resize (nearest) reads, along one axis."""
    x = np.arange(length * scale, dtype=np.float64)
    resized = length * scale
    transforms = {
        "half_pixel": lambda: (x + 0.5) / scale - 0.5,
        "pytorch_half_pixel": lambda: (x + 0.5) / scale - 0.5 if resized > 1 else np.zeros_like(x),
        "asymmetric": lambda: x / scale,
        "tf_half_pixel_for_nn": lambda: (x + 0.5) / scale,
        "align_corners": lambda: x * (length - 1) / (resized - 1) if resized > 1 else np.zeros_like(x),
    }
    roundings = {"round_prefer_floor": lambda v: np.ceil(v - 0.5), "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                 "floor": np.floor, "ceil": np.ceil}
    if mode not in transforms or rounding not in roundings:
        return np.full(resized, -1)   # unknown: reported as not a pixel repeat
    return np.clip(roundings[rounding](transforms[mode]()), 0, length - 1).astype(np.int64)


def _chw_to_hwc_order(c: int, h: int, w: int):
    """order[i] = the CHW flat index of the HWC flat index i (None when they agree)."""
    if c == 1 or h * w == 1:
        return None
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)



class StructuralOps:
    def _reshape_to(self, index, node, t: Tensor, target: tuple):
        """Reshape one sample to ``target`` (ONNX order); only flattening is expressible."""
        current = onnx_shape(t)
        if tuple(target) == current:
            self.b.alias(node.output[0], t, node.name)
        elif len(target) == 1 and len(current) > 1:
            c, *hw = current   # (C, L) is flattened as (C, 1, L)
            self.b.add(node.name, node.output[0], "Flatten", {}, [t],
                       order=_chw_to_hwc_order(c, *([1] * (3 - len(current))), *hw),
                       name=self._name(node, index))
        else:
            raise ModelError(f"ONNX node '{node.name}' ({node.op_type}): reshaping a sample of "
                             f"shape {current} to {tuple(target)} is not supported; only "
                             "flattening (N, C, H, W) or (N, C, L) to (N, features) is")

    def _op_Flatten(self, index, node, a):
        t = self._layer_input(node)
        rank = len(onnx_shape(t)) + 1
        axis = a.get("axis", 1)
        if axis == 0 or axis % rank != 1:
            raise ModelError(f"ONNX node '{node.name}': Flatten with axis={axis} mixes the batch "
                             "axis into the features; only axis=1 is supported")
        self._reshape_to(index, node, t, (math.prod(t.shape),))

    def _op_Squeeze(self, index, node, a):
        t = self._layer_input(node)
        axes = self._const(node, 1, "axes", optional=True)
        axes = a.get("axes") if axes is None else [int(v) for v in axes.reshape(-1)]
        full = (None,) + onnx_shape(t)  # the batch axis is never squeezed implicitly
        rank = len(full)
        drop = {v % rank for v in axes} if axes is not None else \
            {i for i, d in enumerate(full) if d == 1}
        if 0 in drop:
            raise ModelError(f"ONNX node '{node.name}': Squeeze removes the batch axis")
        if any(full[i] != 1 for i in drop if i < rank):
            raise ModelError(f"ONNX node '{node.name}': Squeeze axes {sorted(drop)} of shape "
                             f"(N, {', '.join(map(str, full[1:]))}) are not all of size 1")
        self._reshape_to(index, node, t, tuple(d for i, d in enumerate(full) if i not in drop)[1:])

    def _op_Reshape(self, index, node, a):
        t = self._layer_input(node)
        target = list(self._const(node, 1, "shape").reshape(-1))
        source = (BATCH,) + onnx_shape(t)
        size = math.prod(onnx_shape(t))
        dims = []
        for i, v in enumerate(target):
            if v is BATCH:
                dims.append(BATCH)
            elif int(v) == 0 and not a.get("allowzero", 0):
                if i >= len(source):
                    raise ModelError(f"ONNX node '{node.name}': shape {target} copies a missing axis {i}")
                dims.append(source[i])  # 0 means "copy this dimension"
            else:
                dims.append(int(v))
        first, rest = dims[0], dims[1:]
        if BATCH in rest or not rest:
            raise ModelError(f"ONNX node '{node.name}': Reshape to {dims} moves the batch axis")
        keeps_batch = first is BATCH or (self.static_batch is not None and first == self.static_batch) \
            or (first == -1 and -1 not in rest and math.prod(rest) == size)
        if not keeps_batch:
            raise ModelError(f"ONNX node '{node.name}': Reshape to {dims} does not keep the batch "
                             "axis first; only per-sample reshapes are supported")
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            if rest.count(-1) > 1 or known == 0 or size % known:
                raise ModelError(f"ONNX node '{node.name}': cannot reshape {onnx_shape(t)} to {dims}")
            rest[rest.index(-1)] = size // known
        if math.prod(rest) != size:
            raise ModelError(f"ONNX node '{node.name}': cannot reshape {onnx_shape(t)} "
                             f"({size} values) to {tuple(rest)}")
        self._reshape_to(index, node, t, tuple(rest))

    def _op_Concat(self, index, node, a):
        inputs = [self._layer_input(node, i) for i in range(len(node.input))]
        ranks = {len(onnx_shape(t)) for t in inputs}
        if ranks == {2}:   # 1-D: (N, C, L) as (N, 1, L, C)
            inputs = [self.b.as_map(node.name, name, t) for name, t in zip(node.input, inputs)]
        if len(ranks) != 1:
            raise ModelError(f"ONNX node '{node.name}': Concat of tensors of different ranks")
        rank = ranks.pop() + 1
        axis = a["axis"] % rank
        if rank == 2 and axis == 1:
            orders, offset = [], 0
            for t in inputs:
                orders.append((np.arange(t.shape[0]) if t.order is None else t.order) + offset)
                offset += t.shape[0]
            order = np.concatenate(orders)
            order = None if np.array_equal(order, np.arange(offset)) else order
            self.b.add(node.name, node.output[0], "Concatenate", {"axis": -1}, inputs,
                       order=order, name=self._name(node, index))
        elif rank in (3, 4) and axis > 0:
            # C -> last; H, W keep their place; L is the width of the (1, L, C) map
            neutral_axis = {1: -1, 2: 1 if rank == 4 else 2, 3: 2}[axis]
            self.b.add(node.name, node.output[0], "Concatenate", {"axis": neutral_axis}, inputs,
                       name=self._name(node, index))
        else:
            raise ModelError(f"ONNX node '{node.name}': Concat over axis {a['axis']} of rank-{rank} "
                             "tensors is not supported")

    def _op_Pad(self, index, node, a):
        t, _ = self._map_input(node, 3, 2)
        rank = len(onnx_shape(t)) + 1
        if a.get("mode", "constant") != "constant":
            raise ModelError(f"ONNX node '{node.name}': Pad mode {a['mode']!r} is not supported; "
                             "only constant zero padding")
        if self.opset < 11:
            pads, value, axes = a["pads"], a.get("value", 0.0), None
        else:
            pads = self._const(node, 1, "pads")
            value = self._const(node, 2, "constant_value", optional=True)
            axes = self._const(node, 3, "axes", optional=True)
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
        axes = list(range(rank)) if axes is None else [int(v) % rank for v in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise ModelError(f"ONNX node '{node.name}': {len(pads)} pads for {len(axes)} axes of a "
                             f"rank-{rank} tensor")
        per_axis = {ax: (pads[i], pads[i + len(axes)]) for i, ax in enumerate(axes)}
        if value != 0.0:
            raise ModelError(f"ONNX node '{node.name}': Pad with value {value}; only zeros are supported")
        if any(per_axis.get(ax, (0, 0)) != (0, 0) for ax in (0, 1)):
            raise ModelError(f"ONNX node '{node.name}': Pad {pads} pads the batch or channel axis; "
                             "only height and width (or length) can be padded")
        # (N, C, L) pads its length, the width of the (1, L, C) map
        hw = [per_axis.get(2, (0, 0)), per_axis.get(3, (0, 0))] if rank == 4 else [(0, 0), per_axis.get(2, (0, 0))]
        if min(min(p) for p in hw) < 0:
            raise ModelError(f"ONNX node '{node.name}': negative pads {pads} (cropping) are not supported")
        self.b.add(node.name, node.output[0], "ZeroPadding2D", {"padding": [list(p) for p in hw]},
                   [t], name=self._name(node, index))

    def _op_Resize(self, index, node, a):
        """Nearest-neighbour upsampling by integer factors (nn.Upsample(mode='nearest'))."""
        if self.opset >= 11:
            scales = self._const(node, 2, "scales", optional=True)
            sizes = self._const(node, 3, "sizes", optional=True)
        else:
            scales, sizes = self._const(node, 1, "scales"), None
        self._upsample(index, node, a, scales, sizes)

    def _op_Upsample(self, index, node, a):
        scales = a.get("scales") if self.opset < 9 else self._const(node, 1, "scales")
        a = dict(a, coordinate_transformation_mode="asymmetric", nearest_mode="floor")   # Upsample's rule
        self._upsample(index, node, a, scales, None)

    def _upsample(self, index, node, a, scales, sizes):
        t, _ = self._map_input(node, 3, 2)
        if a.get("mode", "nearest") != "nearest":
            raise ModelError(f"ONNX node '{node.name}': {node.op_type} mode {a.get('mode')!r}; only "
                             "'nearest' is supported")
        shape = onnx_shape(t)   # (C, H, W) or (C, L)
        if scales is not None and np.asarray(scales).size:
            factors = [float(v) for v in np.asarray(scales, np.float64).reshape(-1)]
        elif sizes is not None and np.asarray(sizes).size:
            target = list(np.asarray(sizes).reshape(-1))   # the batch entry may be BATCH
            keeps_batch = target[0] is BATCH or int(target[0]) in (1, self.static_batch)
            factors = [1.0 if keeps_batch else float(target[0])] + [int(v) / d for v, d in zip(target[1:], shape)]
        else:
            raise ModelError(f"ONNX node '{node.name}': {node.op_type} without scales or sizes")
        if len(factors) != len(shape) + 1 or factors[:2] != [1.0, 1.0] or \
                not all(f >= 1 and f == int(f) for f in factors[2:]):
            raise ModelError(f"ONNX node '{node.name}': {node.op_type} scales {factors}; only integer "
                             "scales of height and width, or length (batch and channels 1), are supported")
        size = [1] * (3 - len(shape)) + [int(f) for f in factors[2:]]   # 1-D: (1, s)
        h, w = t.shape[:2]
        mode = a.get("coordinate_transformation_mode", "half_pixel")
        rounding = a.get("nearest_mode", "round_prefer_floor")
        for length, s in zip((h, w), size):
            if not np.array_equal(_nearest_source(length, s, mode, rounding), np.arange(length * s) // s):
                raise ModelError(f"ONNX node '{node.name}': {node.op_type} with coordinate_transformation_"
                                 f"mode={mode!r}, nearest_mode={rounding!r} does not repeat each pixel "
                                 f"{s} times; only that (nearest-neighbour upsampling) is supported")
        self.b.add(node.name, node.output[0], "UpSampling2D", {"size": size}, [t], name=self._name(node, index))
