"""``ttfs-native calibrate``: search a converted model's free parameters on a
labelled calibration set (conversion/calibrate.py)."""
from __future__ import annotations

import argparse
import sys

from ..conversion.calibrate import (DEFAULT_DTS, DEFAULT_HOLDOUT, DEFAULT_LAYER_FACTORS, DEFAULT_PERCENTILES,
                                    DEFAULT_SHORTCUT_FACTORS, DEFAULT_V_THRESH, calibrate)
from ..datasets import bundled_calibration_set, bundled_model
from ..model import load_model
from ..model.settings import describe_simulation
from ..progress import Progress
from ..simulation import BACKENDS
from .common import CliError, add_sweep_options, load_array, output_model_folder, sweep_mapper


def _floats(text: str) -> list:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers):
    p = subparsers.add_parser(
        "calibrate", help="re-calibrate a model folder: percentile, thresholds and dt on a calibration set",
        description="Simulate a converted model on a labelled calibration set for a grid of conversion "
                    "settings (folding, per-channel normalisation, percentile, v_thresh, dt, leak) and "
                    "per-layer threshold scales, choose on a held-out part, print the accuracy-versus-steps "
                    "table and optionally save the chosen model with its settings. `convert --labels` does "
                    "the same from a trained ANN file. Without "
                    "MODEL_DIR it calibrates the bundled digits CNN (its plain conversion) on its bundled "
                    "calibration set.")
    p.add_argument("model_dir", nargs="?", help="model folder (default: the bundled digits CNN)")
    p.add_argument("--calibration", help="(N, *input_shape) .npy calibration inputs, channels-last")
    p.add_argument("--labels", help="(N,) .npy labels of the calibration inputs")
    p.add_argument("--num-samples", type=int, default=None, help="use only the first N calibration samples")
    p.add_argument("--max-steps", type=int, default=64, help="steps per simulation (default 64)")
    p.add_argument("--percentiles", type=_floats, default=list(DEFAULT_PERCENTILES))
    p.add_argument("--v-thresh", type=_floats, default=list(DEFAULT_V_THRESH))
    p.add_argument("--dt", type=_floats, default=list(DEFAULT_DTS))
    p.add_argument("--try-leak", action="store_true", help="also try leak=True")
    p.add_argument("--no-fold", action="store_true", help="do not try folding average pooling")
    p.add_argument("--no-per-channel", action="store_true", help="do not try per-channel normalisation")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help=f"fraction held out to choose between the finalists (default {DEFAULT_HOLDOUT})")
    p.add_argument("--layer-factors", type=_floats, default=list(DEFAULT_LAYER_FACTORS),
                   help="per-layer threshold multipliers tried (empty string: skip)")
    p.add_argument("--layer-rounds", type=int, default=1,
                   help="rounds of the coordinate search over shortcut factors and layer thresholds (default 1)")
    p.add_argument("--shortcut-factors", type=_floats, default=list(DEFAULT_SHORTCUT_FACTORS),
                   help="factors tried on each residual Add's shortcut (networks with an Add; '' to skip)")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", help="write the calibrated model folder here")
    p.add_argument("--verbose", action="store_true", help="print a line per stage of the search")
    add_sweep_options(p)
    p.set_defaults(func=_calibrate)


def _calibrate(args) -> int:
    out_dir = output_model_folder(args.out) if args.out else None   # checked before the search
    if args.model_dir is None:
        if args.calibration or args.labels:
            raise CliError("--calibration/--labels need a MODEL_DIR (the bundled model has its own)")
        model = bundled_model(plain=True)   # the ANN as converted plainly: folding is searched too
        x, y = bundled_calibration_set()
    else:
        if not args.calibration or not args.labels:
            raise CliError("calibrating MODEL_DIR needs --calibration x.npy and --labels y.npy")
        model = load_model(args.model_dir)
        x = load_array(args.calibration, "calibration")
        y = load_array(args.labels, "labels")
    if args.layer_rounds < 1:
        raise CliError(f"--layer-rounds must be >= 1, got {args.layer_rounds}")
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise CliError(f"--num-samples must be >= 1, got {args.num_samples}")
        x, y = x[:args.num_samples], y[:args.num_samples]
    with sweep_mapper(args) as mapper:
        result = calibrate(model, x, y, max_steps=args.max_steps, percentiles=args.percentiles,
                           v_thresh=args.v_thresh, dts=args.dt, leaks=(False, True) if args.try_leak else (False,),
                           fold_pooling=(False,) if args.no_fold else (False, True),
                           per_channel=(False,) if args.no_per_channel else (False, True),
                           layer_factors=args.layer_factors, layer_rounds=args.layer_rounds,
                           shortcut_factors=args.shortcut_factors, holdout=args.holdout, backend=args.backend,
                           num_threads=args.threads or (1 if mapper else None), mapper=mapper,
                           log=(lambda line: print(line, file=sys.stderr)) if args.verbose else None,
                           progress=lambda stage: Progress(desc=f"calibrating: {stage}"))
    print(result.summary())
    print(describe_simulation(result.model.simulation))
    if out_dir:
        result.model.save(out_dir)
        print(f"calibrated model written to {args.out}")
    return 0
