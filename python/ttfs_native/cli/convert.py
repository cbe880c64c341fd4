"""``ttfs-native convert``: a trained ANN file to a model folder.

    ttfs-native convert net.onnx --calibration x_val.npy --labels y_val.npy --out net_snn/   # calibrated
    ttfs-native convert net.onnx --calibration x_train.npy --out net_snn/                    # plain
    ttfs-native convert net.keras --calibration x.npy --percentile 99.99 --softmax-to-relu --out net_snn/

Calibration data are channels-last (N, height, width, channels), the layout of
the model folder, whatever the framework the model came from. Every input is
checked, and --out too, before any work; nothing is written on an error.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..conversion.calibrate import DEFAULT_HOLDOUT
from ..conversion.convert import calibrated_conversion, check_calibration_layout
from ..conversion.normalise import DEFAULT_PERCENTILE, normalise
from ..conversion.window import DEFAULT_PERCENTILE as WINDOW_PERCENTILE, convert_window
from ..model.settings import CODINGS
from ..importers import import_model
from ..model import check_input
from ..model.ann import ann_predictions
from ..model.settings import describe_simulation
from ..model.transforms import fold_average_pooling, softmax_to_relu
from ..progress import Progress
from ..simulation import BACKENDS
from .common import CliError, add_sweep_options, load_array, output_model_folder, sweep_mapper


def add_parser(subparsers):
    p = subparsers.add_parser(
        "convert", help="import a trained ANN (.onnx, .h5, .keras), convert it (calibrated with --labels), "
                        "write a model folder",
        description="Import a trained ANN and write the model folder that `simulate` reads. With --labels: "
                    "normalise and calibrate it for --max-steps steps on the labelled calibration data "
                    "(settings chosen on a held-out part of them), and store the chosen simulation settings "
                    "in the folder. Without: the plain conversion (weights normalised so that the given "
                    "percentile of every layer's non-zero activations becomes 1, as SNN Toolbox's "
                    "normalize_parameters; no settings stored).")
    p.add_argument("model", help="trained network: .onnx, .h5 or .keras")
    p.add_argument("--coding", choices=CODINGS, default=CODINGS[0],
                   help="ttfs-dyn-thresh (default): SNN Toolbox's coding, exact; ttfs-window: the linear "
                        "coding in per-layer windows (docs/WINDOW_SEMANTICS.md), its windows sized on the "
                        "calibration data within --max-steps; both write the settings into the folder")
    p.add_argument("--calibration", required=True,
                   help="(N, height, width, channels) .npy calibration inputs, channels-last, e.g. a "
                        "validation part of the training set")
    p.add_argument("--labels", help="(N,) .npy integer class labels of the calibration inputs: calibrate")
    p.add_argument("--max-steps", type=int, default=64, help="step budget of the calibrated SNN (default 64)")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help=f"fraction of the calibration data held out to choose the settings "
                        f"(default {DEFAULT_HOLDOUT})")
    p.add_argument("--percentile", type=float, default=None,
                   help=f"plain conversion: percentile of the non-zero activations scaled to 1 "
                        f"(default {DEFAULT_PERCENTILE}; ttfs-window: its windows' range, default "
                        f"{WINDOW_PERCENTILE})")
    p.add_argument("--no-search", action="store_true",
                   help="ttfs-window: keep the windows at the percentile and the measured split (default: "
                        "search every window's range and move steps between windows by agreement with the "
                        "ANN on the calibration samples; same latency)")
    p.add_argument("--search-samples", type=int, default=None,
                   help="ttfs-window: search on the first N calibration samples only (default: all; more "
                        "fit the calibration set less, and take proportionally longer)")
    p.add_argument("--softmax-to-relu", action="store_true",
                   help="plain conversion: replace a softmax output by ReLU (deterministic output, first "
                        "spike decides; always done with --labels)")
    p.add_argument("--fold-pooling", action="store_true",
                   help="plain conversion: fold non-overlapping average pooling into the next weighted layer "
                        "(same ANN, fewer spiking layers; searched with --labels)")
    p.add_argument("--num-calibration", type=int, default=None, help="use only the first N calibration samples")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="simulator of the calibration")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the calibration (default: all)")
    p.add_argument("--verbose", action="store_true", help="print the calibration's table of settings")
    p.add_argument("--out", required=True, help="model folder to write")
    add_sweep_options(p)
    p.set_defaults(func=_convert_command)


def _convert_command(args) -> int:
    if args.coding == "ttfs-window" and (args.labels or args.ray or args.workers):
        raise CliError("--labels/--ray calibrate the ttfs-dyn-thresh coding; ttfs-window needs no labels (its "
                       "conversion is exact up to the time resolution)")
    if (args.no_search or args.search_samples is not None) and args.coding != "ttfs-window":
        raise CliError("--no-search/--search-samples apply to --coding ttfs-window (its window search); the "
                       "ttfs-dyn-thresh coding searches only when calibrating (--labels)")
    if args.search_samples is not None and args.search_samples < 1:
        raise CliError(f"--search-samples must be >= 1, got {args.search_samples}")
    out = output_model_folder(args.out)   # checked before any work
    if args.max_steps < 1:
        raise CliError(f"--max-steps must be >= 1, got {args.max_steps}")
    x = load_array(args.calibration, "calibration")
    y = load_array(args.labels, "labels") if args.labels else None
    if args.num_calibration is not None:
        if args.num_calibration < 1:
            raise CliError(f"--num-calibration must be >= 1, got {args.num_calibration}")
        x = x[:args.num_calibration]
        y = y[:args.num_calibration] if y is not None else None
    if y is None and (args.ray or args.workers):
        raise CliError("--ray/--workers run the calibration: they need --labels")
    ann = import_model(args.model)
    if args.coding == "ttfs-window":
        return _window(ann, x, out, args)
    if y is not None:
        return _calibrated(ann, x, y, out, args)
    if args.softmax_to_relu:
        ann = softmax_to_relu(ann)
    if args.fold_pooling:
        ann = fold_average_pooling(ann)
    check_calibration_layout(ann, x)
    x = check_input(ann, x, "calibration input", allow_empty=False)
    model = normalise(ann, x, percentile=DEFAULT_PERCENTILE if args.percentile is None else args.percentile)
    agree = float(np.mean(ann_predictions(model, x) == ann_predictions(ann, x)))
    model.save(out)
    record = model.metadata["normalisation"]
    print(model.summary())
    print(f"normalised on {len(x)} calibration samples at the {record['percentile']:g}th percentile:")
    width = max(len(n) for n in record["scale_factors"])
    for name, factor in record["scale_factors"].items():
        note = "  (softmax output: kept at 1, as the toolbox)" if model.layer(name).activation == "softmax" else ""
        print(f"  {name:<{width}}  lambda = {factor:.6g}{note}")
    print(f"ANN predictions on the calibration data unchanged: {agree:.2%}")
    print("no simulation settings stored (plain conversion): give simulate --duration, or convert with --labels")
    print(f"model folder written to {out}")
    return 0


def _calibrated(ann, x, y, out: Path, args) -> int:
    def log(line):
        print(line, file=sys.stderr, flush=True)

    with sweep_mapper(args) as mapper:
        threads = args.threads or (1 if mapper else None)   # on Ray: one thread per worker
        result = calibrated_conversion(ann, x, y, max_steps=args.max_steps, holdout=args.holdout,
                                       backend=args.backend, num_threads=threads, log=log, mapper=mapper,
                                       progress=lambda stage: Progress(desc=f"calibrating: {stage}", unit="sample"))
    model = result.model
    model.save(out)
    print(result.summary() if args.verbose else model.summary())
    if not args.verbose:
        print(f"calibrated in {result.wall_time:.1f} s on {result.num_samples} samples: "
              f"ANN {result.ann_accuracy:.4f}; SNN {result.best.accuracy:.4f} on the search part, "
              + (f"{result.holdout_best.accuracy:.4f} on the held-out part (ANN {result.holdout_ann_accuracy:.4f})"
                 if result.holdout else "no held-out part"))
        print(f"chosen: {result.best.setting.describe()}")
    else:
        print(describe_simulation(model.simulation))
    print(f"model folder written to {out}")
    return 0


def _window(ann, x, out: Path, args) -> int:
    check_calibration_layout(ann, x)
    model = convert_window(softmax_to_relu(ann), x, max_steps=args.max_steps,
                           percentile=WINDOW_PERCENTILE if args.percentile is None else args.percentile,
                           search=not args.no_search, search_samples=args.search_samples,
                           log=lambda line: print(line, file=sys.stderr, flush=True))
    model.save(out)
    print(model.summary())     # (its last line: the simulation settings)
    searched = model.metadata["window_conversion"]["search"]
    if searched:
        print(f"window search on {searched['samples']} calibration samples: predictions equal to the ANN's "
              f"{searched['agree_before']:.2%} before, {searched['agree_after']:.2%} after (quantised-ANN "
              "estimator)")
    print(f"model folder written to {out}")
    return 0
