"""Plain numpy layer operations (channels-last, float32), readable not fast.

Used by the ANN forward pass and by the numpy reference simulator. Every
function takes a batch ``x`` of shape (N, *layer input shape).
"""
from __future__ import annotations

import numpy as np

from .layers import LayerSpec, concat_axis


def _windows(x: np.ndarray, spec: LayerSpec, kernel, strides, dilation, pad_value=0.0):
    """Yield (ky, kx, view) with view[n, oy, ox, c] = padded x at the tap (ky, kx)."""
    pt, pb, pl, pr = spec.pads
    if any(spec.pads):
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    oh, ow = spec.output_shape[0], spec.output_shape[1]
    for ky in range(kernel[0]):
        y0 = ky * dilation[0]
        for kx in range(kernel[1]):
            x0 = kx * dilation[1]
            yield ky, kx, x[:, y0:y0 + (oh - 1) * strides[0] + 1:strides[0],
                            x0:x0 + (ow - 1) * strides[1] + 1:strides[1], :]


def conv2d(x, spec: LayerSpec, kernel: np.ndarray) -> np.ndarray:
    """Accumulates in the inputs' precision (float32, or float64 for exact sums):
    one matrix product per kernel tap, on a contiguous copy of the tap's view
    (numpy multiplies strided views without BLAS, many times slower)."""
    c = spec.config
    out = np.zeros((x.shape[0],) + spec.output_shape, np.result_type(x, kernel))
    rows = out.reshape(-1, out.shape[-1])
    for ky, kx, view in _windows(x, spec, c["kernel_size"], c["strides"], c["dilation_rate"]):
        rows += np.ascontiguousarray(view).reshape(rows.shape[0], -1) @ kernel[ky, kx]
    return out


def depthwise_conv2d(x, spec: LayerSpec, kernel: np.ndarray) -> np.ndarray:
    c = spec.config
    n, (oh, ow, _) = x.shape[0], spec.output_shape
    out = np.zeros((n, oh, ow, x.shape[3], c["depth_multiplier"]), np.result_type(x, kernel))
    for ky, kx, view in _windows(x, spec, c["kernel_size"], c["strides"], c["dilation_rate"]):
        out += view[..., None] * kernel[ky, kx]
    return out.reshape((n,) + spec.output_shape)


def average_pool(x, spec: LayerSpec) -> np.ndarray:
    """Float32 window sum divided by the number of cells inside the input."""
    c = spec.config
    total = np.zeros((x.shape[0],) + spec.output_shape, np.float32)
    for _, _, view in _windows(x, spec, c["pool_size"], c["strides"], (1, 1)):
        total += view
    return total / pool_cell_counts(spec)


def pool_cell_counts(spec: LayerSpec) -> np.ndarray:
    """(oh, ow, 1) float32 number of non-padded cells per pooling window."""
    ones = np.ones((1,) + spec.input_shape[:2] + (1,), np.float32)
    count = np.zeros((1,) + spec.output_shape[:2] + (1,), np.float32)
    for _, _, view in _windows(ones, spec, spec.config["pool_size"], spec.config["strides"], (1, 1)):
        count += view
    return count[0]


def max_pool(x, spec: LayerSpec) -> np.ndarray:
    c = spec.config
    out = np.full((x.shape[0],) + spec.output_shape, -np.inf, np.float32)
    for _, _, view in _windows(x, spec, c["pool_size"], c["strides"], (1, 1), pad_value=-np.inf):
        np.maximum(out, view, out=out)
    return out


def zero_padding(x, spec: LayerSpec) -> np.ndarray:
    (top, bottom), (left, right) = spec.config["padding"]
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def structural(spec: LayerSpec, inputs: list) -> np.ndarray:
    """Flatten, Reshape, ZeroPadding2D, Concatenate or UpSampling2D (nearest) of a batch."""
    x = inputs[0]
    n = x.shape[0]
    if spec.type in ("Flatten", "Reshape"):
        return x.reshape((n,) + spec.output_shape)
    if spec.type == "ZeroPadding2D":
        return zero_padding(x, spec)
    if spec.type == "UpSampling2D":
        sh, sw = spec.config["size"]
        return np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)
    return np.concatenate(inputs, axis=concat_axis(spec) + 1)


def linear(spec: LayerSpec, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``kernel * x`` for Dense, Conv2D and DepthwiseConv2D, in the precision of
    ``x`` and ``kernel``, not rounded."""
    if spec.type == "Dense":
        return x @ kernel
    if spec.type == "Conv2D":
        return conv2d(x, spec, kernel)
    return depthwise_conv2d(x, spec, kernel)


def weighted(spec: LayerSpec, x: np.ndarray, kernel: np.ndarray, bias) -> np.ndarray:
    """``kernel * x + bias`` for Dense, Conv2D and DepthwiseConv2D (bias may be None).

    The sum is taken in the precision of ``x`` and ``kernel`` and rounded to
    float32 once; the bias is then added in float32.
    """
    out = linear(spec, x, kernel).astype(np.float32, copy=False)
    if bias is not None:
        out = out + bias
    return out


def add(spec: LayerSpec, inputs: list) -> np.ndarray:
    """An Add's pre-activation: sum over inbound b of ``scales[b] * input_b``, in float32, in order."""
    out = np.zeros(inputs[0].shape, np.float32)
    for x, scale in zip(inputs, spec.scales):
        out += x if scale == 1.0 else x * np.float32(scale)
    return out


def softmax(v: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def apply_layer(spec: LayerSpec, inputs: list, weights, activation: bool = True) -> np.ndarray:
    """One layer of the ANN forward pass."""
    if spec.is_structural:
        return structural(spec, inputs)
    x = inputs[0]
    if spec.type == "AveragePooling2D":
        return average_pool(x, spec)
    if spec.type == "MaxPooling2D":
        return max_pool(x, spec)
    out = add(spec, inputs) if spec.is_add else weighted(spec, x, weights["kernel"], weights["bias"])
    if not activation or spec.activation == "linear":
        return out
    if spec.activation == "softmax":
        return softmax(out)
    out = np.maximum(out, 0)
    return out if spec.max_value is None else np.minimum(out, np.float32(spec.max_value))
