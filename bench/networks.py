"""Benchmark networks: random weights, fixed seeds, data-normalised so that they spike.

Weights are He-normal; each weighted layer then gets a batch norm folded in
(zero mean, unit variance per output channel on the benchmark inputs, plus
the small random bias as beta), as a converted, batch-normalised network has:
without it a deep random ReLU net maps every uniform-noise input to the same
class. Then the package's normaliser (``ttfs_native.normalise``, SNN Toolbox's
data-based normalisation) scales every weighted layer so that the 99.9th
percentile of its non-zero ReLU activations on the benchmark inputs is 1. The output layer is a ReLU layer (the first output neuron to
fire gives the prediction), so early stop is possible.
"""
from __future__ import annotations

import numpy as np

import ttfs_native as tn
from ttfs_native.model import ops
from ttfs_native.model import INPUT_NAME, weight_shapes

PERCENTILE = 99.9


def _conv(name, filters, k, strides=1, padding="same"):
    return {"name": name, "type": "Conv2D", "filters": filters, "kernel_size": k,
            "strides": strides, "padding": padding, "activation": "relu"}


def _dw(name, k=3, strides=1):
    return {"name": name, "type": "DepthwiseConv2D", "kernel_size": k, "strides": strides,
            "padding": "same", "depth_multiplier": 1, "activation": "relu"}


def _pool(name, kind="avg", size=2):
    return {"name": name, "type": "AveragePooling2D" if kind == "avg" else "MaxPooling2D",
            "pool_size": size, "strides": size, "padding": "valid"}


def _dense(name, units):
    return {"name": name, "type": "Dense", "units": units, "activation": "relu"}


def lenet_layers():
    """LeNet-style, 28x28x1: conv6 5x5 same - avgpool2 - conv16 5x5 - avgpool2 - 120 - 84 - 10."""
    return (28, 28, 1), [
        _conv("conv1", 6, 5, padding="same"), _pool("pool1"),
        _conv("conv2", 16, 5, padding="valid"), _pool("pool2"),
        {"name": "flatten", "type": "Flatten"},
        _dense("fc1", 120), _dense("fc2", 84), _dense("out", 10)]


def lenet_wide_layers():
    """The wider LeNet of SNN Toolbox's examples, 28x28x1: conv32 5x5 - avgpool2 - conv64 5x5 -
    avgpool2 - 128 - 10 (ReLU output)."""
    return (28, 28, 1), [
        _conv("conv1", 32, 5, padding="valid"), _pool("pool1"),
        _conv("conv2", 64, 5, padding="valid"), _pool("pool2"),
        {"name": "flatten", "type": "Flatten"},
        _dense("fc1", 128), _dense("out", 10)]


def vgg_layers(pool="avg"):
    """VGG-style, 32x32x3: 2x conv64, pool, 2x conv128, pool, 2x conv256, pool, 512, 10."""
    layers = []
    for block, filters in enumerate((64, 128, 256), start=1):
        layers += [_conv(f"conv{block}_1", filters, 3), _conv(f"conv{block}_2", filters, 3),
                   _pool(f"pool{block}", pool)]
    layers += [{"name": "flatten", "type": "Flatten"}, _dense("fc1", 512), _dense("out", 10)]
    return (32, 32, 3), layers


def mobilenet_layers():
    """MobileNet-style, 32x32x3: conv32/2, 3 x (depthwise 3x3 + pointwise 1x1), global avg pool, 10."""
    layers = [_conv("conv0", 32, 3, strides=2)]                       # 16x16x32
    for block, (stride, filters) in enumerate(((1, 64), (2, 128), (2, 256)), start=1):
        layers += [_dw(f"dw{block}", 3, stride), _conv(f"pw{block}", filters, 1)]
    layers += [_pool("gap", "avg", 4),                                # 4x4 -> 1x1 global average
               {"name": "flatten", "type": "Flatten"},
               {"name": "out", "type": "Dense", "units": 10, "activation": "relu"}]
    return (32, 32, 3), layers


def resnet_layers():
    """ResNet-style, 28x28x1, the shape of scripts/train_resnet_mnist.py: conv16 3x3 stem, an
    identity block (conv16-conv16 + stem), a strided block (conv32/2-conv32 + 1x1/2 projection),
    global average pooling, 10."""
    return (28, 28, 1), [
        _conv("stem", 16, 3),
        _conv("b1a", 16, 3), dict(_conv("b1b", 16, 3), activation="linear"),
        {"name": "add1", "type": "Add", "inbound": ["b1b", "stem"]},
        dict(_conv("b2a", 32, 3, strides=2), inbound=["add1"]), dict(_conv("b2b", 32, 3), activation="linear"),
        dict(_conv("proj", 32, 1, strides=2), inbound=["add1"], activation="linear"),
        {"name": "add2", "type": "Add", "inbound": ["b2b", "proj"]},
        _pool("gap", "avg", 14),
        {"name": "flatten", "type": "Flatten"},
        _dense("out", 10)]


NETWORKS = {
    "lenet": lenet_layers,
    "lenet_wide": lenet_wide_layers,
    "vgg": lambda: vgg_layers("avg"),
    "vgg_max": lambda: vgg_layers("max"),
    "mobilenet": mobilenet_layers,
    "resnet": resnet_layers,
}
DESCRIPTIONS = {
    "lenet": "LeNet-style 28x28x1: conv6(5x5,same)-avgpool2-conv16(5x5)-avgpool2-120-84-10",
    "lenet_wide": "wider LeNet 28x28x1: conv32(5x5)-avgpool2-conv64(5x5)-avgpool2-128-10",
    "vgg": "VGG-style 32x32x3: 2xconv64-avgpool-2xconv128-avgpool-2xconv256-avgpool-512-10",
    "vgg_max": "VGG-style 32x32x3 with MaxPooling2D instead of average pooling",
    "mobilenet": "MobileNet-style 32x32x3: conv32/2, 3x(depthwise3x3+conv1x1), global avgpool, 10",
    "resnet": "ResNet-style 28x28x1: conv16, identity block (2xconv16 + stem), strided block "
              "(conv32/2-conv32 + 1x1/2 projection), global avgpool, 10",
}
SEEDS = {"lenet": 1, "lenet_wide": 4, "vgg": 2, "vgg_max": 2, "mobilenet": 3, "resnet": 5}


def _random_weights(input_shape, layers, rng) -> dict:
    """He-normal kernels and small normal biases in Keras layouts."""
    weights = {}
    for name, (kshape, bshape) in weight_shapes(input_shape, layers).items():
        # depthwise kernels (kh, kw, in, multiplier) have a fan-in of kh*kw
        depthwise = next(l for l in layers if l["name"] == name)["type"] == "DepthwiseConv2D"
        fan_in = int(np.prod(kshape[:2] if depthwise else kshape[:-1]))
        kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), kshape).astype(np.float32)
        bias = None if bshape is None else rng.normal(0.0, 0.05, bshape).astype(np.float32)
        weights[name] = {"kernel": kernel, "bias": bias}
    return weights


def condition(model: tn.Model, x: np.ndarray) -> None:
    """Fold a batch norm with the statistics of ``x`` into each weighted layer
    of the random ``model``, in place (gamma 1, beta = the random bias): per
    output channel zero mean and unit variance, so that about half of the units
    are active and samples stay distinguishable, as in a trained, batch-normalised
    network. One forward pass, each layer on the already-conditioned activations
    before it."""
    acts = {INPUT_NAME: np.asarray(x, np.float32)}
    for spec in model.layers:
        ins = [acts[n] for n in spec.inbound]
        if spec.is_weighted:
            w = model.weights[spec.name]
            pre = ops.weighted(spec, ins[0], w["kernel"], w["bias"])
            if w["bias"] is not None:
                flat = pre.reshape(-1, pre.shape[-1])
                mean = flat.mean(axis=0)
                std = flat.std(axis=0) + np.float32(1e-3)
                w["kernel"] /= std.reshape(w["kernel"].shape[2:] if spec.type == "DepthwiseConv2D"
                                           else (1,) * (w["kernel"].ndim - 1) + (-1,))
                beta = w["bias"].copy()
                w["bias"] = ((w["bias"] - mean) / std + beta).astype(np.float32)
                pre = ((pre - mean) / std + beta).astype(np.float32)  # = the new layer's output
            acts[spec.name] = np.maximum(pre, 0).astype(np.float32)
        else:
            acts[spec.name] = ops.apply_layer(spec, ins, None)


def inputs(net: str, n: int, seed: int | None = None) -> np.ndarray:
    """The benchmark inputs of ``net``: uniform [0, 1), fixed seed, (n, *input_shape) float32."""
    shape, _ = NETWORKS[net]()
    rng = np.random.default_rng(10_000 + (SEEDS[net] if seed is None else seed))
    return rng.random((n,) + tuple(shape), dtype=np.float32)


def build(net: str, x: np.ndarray | None = None, n_norm: int = 64) -> tn.Model:
    """The benchmark model ``net`` with random weights, normalised on the first ``n_norm``
    samples of ``x`` (default: its benchmark inputs)."""
    if net not in NETWORKS:
        raise ValueError(f"unknown network {net!r}; choose from {', '.join(NETWORKS)}")
    shape, layers = NETWORKS[net]()
    rng = np.random.default_rng(SEEDS[net])
    model = tn.Model(shape, layers, _random_weights(shape, layers, rng),
                     metadata={"benchmark": net, "description": DESCRIPTIONS[net]})
    if x is None:
        x = inputs(net, n_norm)
    condition(model, x[:n_norm])
    return tn.normalise(model, x[:n_norm], percentile=PERCENTILE)   # the package's normaliser


def save_models(directory, nets=None) -> list:
    """Write each benchmark network as a model folder ``directory/<net>``; returns the paths."""
    from pathlib import Path
    out = []
    for net in nets or NETWORKS:
        out.append(build(net).save(Path(directory) / net))
    return out
