"""``ttfs-native convert``: a trained ANN file to a normalised model folder.

    ttfs-native convert net.onnx --calibration x_train.npy --out net_snn/
    ttfs-native convert net.keras --calibration x.npy --percentile 99.99 --softmax-to-relu --out net_snn/

Calibration data are channels-last (N, height, width, channels), the layout of
the model folder, whatever the framework the model came from.
"""
from __future__ import annotations

import numpy as np

from ..conversion.convert import check_calibration_layout
from ..conversion.normalise import DEFAULT_PERCENTILE, normalise
from ..importers import import_model
from ..model.ann import ann_predictions
from ..model.transforms import fold_average_pooling, softmax_to_relu
from .common import CliError, load_array, output_folder


def add_parser(subparsers):
    p = subparsers.add_parser(
        "convert", help="import a trained ANN (.onnx, .h5, .keras), normalise it, write a model folder",
        description="Import a trained ANN, normalise its weights on calibration data (the given percentile "
                    "of every layer's non-zero activations becomes 1, as SNN Toolbox's normalize_parameters) "
                    "and write the model folder that `simulate` reads.")
    p.add_argument("model", help="trained network: .onnx, .h5 or .keras")
    p.add_argument("--calibration", required=True,
                   help="(N, height, width, channels) or, for 1-D networks, (N, length, channels) .npy "
                        "calibration inputs, channels-last, e.g. a part of the training set")
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
    out_dir = output_folder(args.out)   # checked before any work
    x = load_array(args.calibration, "calibration")
    if args.num_calibration is not None:
        if args.num_calibration < 1:
            raise CliError(f"--num-calibration must be >= 1, got {args.num_calibration}")
        x = x[:args.num_calibration]
    ann = import_model(args.model)
    if args.softmax_to_relu:
        ann = softmax_to_relu(ann)
    if args.fold_pooling:
        ann = fold_average_pooling(ann)
    check_calibration_layout(ann, x)
    model = normalise(ann, x, percentile=args.percentile)
    agree = float(np.mean(ann_predictions(model, x) == ann_predictions(ann, x)))
    out = model.save(out_dir)
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
