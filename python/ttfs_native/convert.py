"""``ttfs-native convert``: a trained ANN file to a normalised model folder.

    ttfs-native convert net.onnx --calibration x_train.npy --out net_snn/
    ttfs-native convert net.keras --calibration x.npy --percentile 99.99 --softmax-to-relu --out net_snn/

Steps: import (``from_onnx`` for ``.onnx``, ``from_keras`` for ``.h5`` and
``.keras``), optionally replace a softmax output by ReLU (the toolbox's
``softmax_to_relu``) and fold average pooling into the next weighted layer
(``--fold-pooling``), normalise on the calibration data (normalise.py),
save. ``ttfs-native calibrate`` then finds the simulation settings.
Calibration data are channels-last (N, height, width, channels), the layout of
the model folder, whatever the framework the model came from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import Model
from .normalise import DEFAULT_PERCENTILE, normalise

IMPORTERS = {".onnx": "from_onnx", ".h5": "from_keras", ".keras": "from_keras"}


def import_model(path) -> Model:
    """Read an ANN file with the importer its extension names."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMPORTERS:
        raise ValueError(f"cannot tell the format of {path.name!r} from its extension {suffix!r}; "
                         f"supported: {', '.join(sorted(IMPORTERS))}")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    from . import importers
    return getattr(importers, IMPORTERS[suffix])(path)


def softmax_to_relu(model: Model) -> Model:
    """A copy of ``model`` whose softmax output layer uses ReLU (toolbox ``softmax_to_relu``).

    The SNN's output then fires once, deterministically, and the first output
    neuron to fire is the prediction; the ANN's argmax is unchanged wherever
    some output is positive.
    """
    layers = [s.to_json() for s in model.layers]
    out = layers[-1]
    if out.get("activation") != "softmax":
        return model
    out["activation"] = "relu"
    weights = {n: dict(w) for n, w in model.weights.items()}
    metadata = dict(model.metadata)
    metadata["softmax_to_relu"] = True
    return Model(model.input_shape, layers, weights, metadata)


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
    from .connectivity import CONVENTIONS, ann_operations
    metadata = dict(model.metadata)
    metadata["folded_average_pooling"] = metadata.get("folded_average_pooling", []) + folded
    # the ANN as trained is the fair reference for operation counts
    metadata.setdefault("ann_operations_before_folding",
                        {c: float(ann_operations(model, c)) for c in CONVENTIONS})
    return Model(model.input_shape, [r for r in layers if r["name"] not in drop], weights, metadata)


def convert(path, x_calibration, percentile: float = DEFAULT_PERCENTILE, softmax_relu: bool = False,
            fold_pooling: bool = False, batch_size: int = 256) -> Model:
    """Import ``path``; optionally apply ``softmax_to_relu`` and fold average
    pooling; normalise; return the Model."""
    model = import_model(path)
    if softmax_relu:
        model = softmax_to_relu(model)
    if fold_pooling:
        model = fold_average_pooling(model)
    _check_calibration_layout(model, x_calibration)
    return normalise(model, x_calibration, percentile=percentile, batch_size=batch_size)


def _check_calibration_layout(model: Model, x) -> None:
    """Point out channels-first calibration data, the usual mistake with ONNX/PyTorch models."""
    shape = tuple(np.shape(x))
    want = model.input_shape
    if len(want) == 3 and len(shape) == 4 and shape[1:] != want and shape[1:] == (want[2], want[0], want[1]):
        raise ValueError(f"calibration data have shape {shape}, which looks channels-first; the model "
                         f"expects channels-last (N, {', '.join(map(str, want))}): use "
                         "x.transpose(0, 2, 3, 1)")


# ------------------------------------------------------------------ CLI
def add_parser(subparsers):
    p = subparsers.add_parser(
        "convert", help="import a trained ANN (.onnx, .h5, .keras), normalise it, write a model folder",
        description="Import a trained ANN, normalise its weights on calibration data (the given percentile "
                    "of every layer's non-zero activations becomes 1, as SNN Toolbox's normalize_parameters) "
                    "and write the model folder that `simulate` reads.")
    p.add_argument("model", help="trained network: .onnx, .h5 or .keras")
    p.add_argument("--calibration", required=True,
                   help="(N, height, width, channels) .npy calibration inputs, channels-last, e.g. a part "
                        "of the training set")
    p.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                   help=f"percentile of the non-zero activations scaled to 1 (default {DEFAULT_PERCENTILE})")
    p.add_argument("--softmax-to-relu", action="store_true",
                   help="replace a softmax output by ReLU (deterministic output, first spike decides)")
    p.add_argument("--fold-pooling", action="store_true",
                   help="fold non-overlapping average pooling into the next weighted layer (same ANN, fewer "
                        "spiking layers: usually a more accurate SNN, more synaptic operations)")
    p.add_argument("--num-calibration", type=int, default=None, help="use only the first N calibration samples")
    p.add_argument("--out", required=True, help="model folder to write")
    p.set_defaults(func=_convert_command)


def _convert_command(args) -> int:
    from .cli import CliError, _load_array
    from .demo import ann_predictions

    x = _load_array(args.calibration, "calibration")
    if args.num_calibration is not None:
        if args.num_calibration < 1:
            raise CliError(f"--num-calibration must be >= 1, got {args.num_calibration}")
        x = x[:args.num_calibration]
    ann = import_model(args.model)
    if args.softmax_to_relu:
        ann = softmax_to_relu(ann)
    if args.fold_pooling:
        ann = fold_average_pooling(ann)
    _check_calibration_layout(ann, x)
    model = normalise(ann, x, percentile=args.percentile)
    agree = float(np.mean(ann_predictions(model, x) == ann_predictions(ann, x)))
    out = model.save(Path(args.out))
    record = model.metadata["normalisation"]
    print(model.summary())
    print(f"normalised on {len(x)} calibration samples at the {record['percentile']:g}th percentile:")
    width = max(len(n) for n in record["scale_factors"])
    for name, factor in record["scale_factors"].items():
        note = "  (softmax output: kept at 1, as the toolbox)" if model.layer(name).activation == "softmax" else ""
        print(f"  {name:<{width}}  lambda = {factor:.6g}{note}")
    print(f"ANN predictions on the calibration data unchanged: {agree:.2%}")
    print(f"model folder written to {out}")
    return 0
