"""``ttfs-native demo``: the bundled digits CNN simulated and compared with its ANN (demo.py)."""
from __future__ import annotations

import argparse

from ..datasets import DATASETS
from ..demo import run_demo
from ..model.settings import CODINGS
from ..simulation import BACKENDS
from .common import plot_folder


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help="simulate a bundled CNN (8x8 digits, or an MNIST LeNet-5) and compare it with its ANN",
        description="Load a bundled CNN and its test images (--dataset digits: an 8x8-digits CNN and its "
                    "360-image test split, the default; mnist: a LeNet-5 and 2000 MNIST test images), "
                    "simulate it as a TTFS SNN on the best available backend, and print ANN versus SNN "
                    "accuracy, latency, spikes, operations and speed. Defaults: the settings its calibration "
                    "chose (stored with the model).")
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="bundled network (default digits)")
    p.add_argument("--coding", default="ttfs-dyn-thresh", choices=CODINGS,
                   help="ttfs-dyn-thresh (default, SNN Toolbox's) or ttfs-window (the linear coding in per-layer "
                        "windows, docs/WINDOW_SEMANTICS.md)")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--num-samples", type=int, default=None, help="simulate only the first N test images")
    p.add_argument("--duration", type=float, default=None, help="simulated time (default: calibrated)")
    p.add_argument("--dt", type=float, default=None, help="time step (default: calibrated)")
    p.add_argument("--v-thresh", type=float, default=None, help="base threshold (default: calibrated)")
    p.add_argument("--leak", action=argparse.BooleanOptionalAction, default=None,
                   help="membrane leak on/off (default: calibrated)")
    p.add_argument("--plain", action="store_true",
                   help="the toolbox's plain conversion instead: percentile 99.9, v_thresh 1, dt 1, 64 steps")
    p.add_argument("--batch-size", type=int, default=None, help="samples per backend call (default 64)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--early-stop", action="store_true", help="stop each sample once its output fired")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    plots = plot_folder(args.plot) if args.plot else None   # checked before the run
    report = run_demo(num_samples=args.num_samples, backend=args.backend, duration=args.duration, dt=args.dt,
                      v_thresh=args.v_thresh, leak=args.leak, plain=args.plain, batch_size=args.batch_size,
                      num_threads=args.threads, early_stop=args.early_stop, progress=not args.no_progress,
                      plot_dir=plots, dataset=args.dataset, coding=args.coding)
    print(report.table())
    for path in report.plots:
        print(f"plot written to {path}")
    return 0
