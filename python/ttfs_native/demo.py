"""``ttfs-native demo``: the bundled digits CNN, converted and simulated in one command.

The package ships a small CNN trained on scikit-learn's 8x8 digits (made by
``scripts/train_default_model.py``) in two conversions: ``data/digits_cnn``
(calibrated, the default) and ``data/digits_cnn_plain`` (the toolbox's plain
conversion: normalised at the 99.9th percentile, nothing else), with its
360-image test split and its 287-image calibration split. The demo simulates
the test split on the best available backend and prints ANN versus SNN
accuracy, latency, spikes, operations and speed.

Defaults come from the calibration stored in the bundled model's metadata
(``ttfs-native calibrate`` found them on the calibration split; see
calibrate.py): the percentile and per-layer threshold scales are in the
weights, and ``metadata["calibration"]["simulation"]`` holds ``duration``,
``dt``, ``v_thresh`` and ``leak``. The bundled defaults: average pooling
folded into the next layer, percentile 99, per-layer thresholds conv1 x0.707
and dense x0.354, ``v_thresh`` 1.5, ``dt`` 0.5, ``duration`` 32 (64 steps),
no leak. ``--plain`` instead simulates the toolbox's plain conversion with
its settings (``v_thresh`` 1, ``dt`` 1, 64 steps).

This module also registers ``ttfs-native calibrate`` (calibrate.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .model import Model, load_model

# The toolbox's settings, for the plain conversion (and any model without a calibration record).
PLAIN_SIMULATION = {"duration": 64.0, "dt": 1.0, "v_thresh": 1.0, "leak": False}


# ------------------------------------------------------------ bundled data
@contextmanager
def _data_path(*parts):
    with resources.as_file(resources.files("ttfs_native").joinpath("data", *parts)) as path:
        if not Path(path).exists():
            raise FileNotFoundError(f"bundled file ttfs_native/data/{'/'.join(parts)} is missing from this "
                                    "installation; rerun scripts/train_default_model.py and reinstall")
        yield Path(path)


def bundled_model(plain: bool = False) -> Model:
    """The bundled digits CNN: calibrated, or with ``plain`` the toolbox's plain conversion."""
    with _data_path("digits_cnn_plain" if plain else "digits_cnn") as path:
        return load_model(path)


def _bundled_split(name: str) -> tuple:
    with _data_path(name) as path, np.load(path, allow_pickle=False) as data:
        return data["x"].astype(np.float32), data["y"].astype(np.int64)


def bundled_test_set() -> tuple:
    """(x (360, 8, 8, 1) float32 in [0, 1], y (360,) int64): the digits test split."""
    return _bundled_split("digits_test.npz")


def bundled_calibration_set() -> tuple:
    """(x, y): the 287 training images held out to normalise and calibrate the CNN."""
    return _bundled_split("digits_calibration.npz")


def ann_predictions(model: Model, x) -> np.ndarray:
    """The ANN's class decisions: argmax of the output layer's pre-activation.

    (With a softmax output replaced by ReLU, ReLU would turn all-negative
    outputs into a tie at class 0; the trained ANN decided by its logits.)
    Layer threshold scales of a calibrated model are undone first (ann_view).
    """
    from . import ops
    from .calibrate import ann_view
    model = ann_view(model)
    acts = model.ann_forward(x, return_all=True)
    out = model.output_layer
    w = model.weights[out.name]
    logits = ops.weighted(out, acts[out.inbound[0]], w["kernel"], w["bias"]) if out.is_weighted else acts[out.name]
    return logits.reshape(len(logits), -1).argmax(axis=1)


# ------------------------------------------------------------ the demo
@dataclass
class DemoReport:
    """What the demo measured (accuracies in [0, 1])."""

    ann_accuracy: float
    snn_accuracy: float
    mean_latency_steps: float
    spikes_per_neuron: float
    synops_per_sample: float
    ann_ops: float
    wall_time: float
    samples_per_second: float
    num_samples: int
    steps: int
    backend: str
    settings: dict
    result: object = field(repr=False, default=None)
    plots: list = field(default_factory=list)

    @property
    def synops_ratio(self) -> float:
        return self.synops_per_sample / self.ann_ops if self.ann_ops else float("nan")

    def table(self) -> str:
        s = self.settings
        undecided = int(np.sum(self.result.predictions < 0)) if self.result is not None else 0
        rows = [
            ("accuracy", f"{self.ann_accuracy:.4f}", f"{self.snn_accuracy:.4f}"),
            ("mean first-output-spike latency", "-",
             f"{self.mean_latency_steps:.1f} steps" + (f" ({undecided} undecided)" if undecided else "")),
            ("spikes per neuron", "-", f"{self.spikes_per_neuron:.3f}"),
            ("operations per sample", f"{self.ann_ops:,.0f}",
             f"{self.synops_per_sample:,.0f} synaptic ({self.synops_ratio:.2f} x ANN)"),
            ("wall time", "-", f"{self.wall_time:.3f} s"),
            ("samples per second", "-", f"{self.samples_per_second:,.0f}"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"digits CNN, {self.num_samples} test samples, {self.steps} steps "
                 f"(duration {s['duration']:g}, dt {s['dt']:g}), v_thresh {s['v_thresh']:g}, "
                 f"leak {'on' if s['leak'] else 'off'}, backend {self.backend}",
                 f"{'':<{width}}  {'ANN':>10}  SNN"]
        lines += [f"{name:<{width}}  {ann:>10}  {snn}" for name, ann, snn in rows]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "ann_accuracy", "snn_accuracy", "mean_latency_steps", "spikes_per_neuron", "synops_per_sample",
            "ann_ops", "synops_ratio", "wall_time", "samples_per_second", "num_samples", "steps", "backend")}


class _Progress:
    """``progress(done, total)`` callback: a bar once the run has taken about a second."""

    def __init__(self, delay: float = 1.0, stream=None):
        self.start = time.perf_counter()
        self.delay = delay
        self.stream = stream or sys.stderr
        self.bar = None
        self.shown = False

    def __call__(self, done: int, total: int):
        if not self.shown and (done >= total or time.perf_counter() - self.start < self.delay):
            return
        if not self.shown:
            self.shown = True
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, initial=done, unit="sample", desc="simulating", file=self.stream)
            except ImportError:
                self.bar = None
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        else:
            self.stream.write(f"\rsimulating {done}/{total} samples")
            self.stream.flush()
        if done >= total:
            self.close()

    def close(self):
        if self.shown:
            if self.bar is not None:
                self.bar.close()
            else:
                self.stream.write("\n")
                self.stream.flush()
            self.shown = False
            self.bar = None


def demo_settings(model: Model, plain: bool = False) -> dict:
    """Simulator settings of the demo: the calibrated ones, or the toolbox's with ``plain``."""
    from .calibrate import recommended_simulation
    sim = None if plain else recommended_simulation(model)
    return dict(sim or PLAIN_SIMULATION)


def run_demo(num_samples: int | None = None, backend: str = "auto", duration: float | None = None,
             dt: float | None = None, v_thresh: float | None = None, leak: bool | None = None,
             plain: bool = False, batch_size: int | None = None, num_threads: int | None = None,
             early_stop: bool = False, progress: bool = False, plot_dir=None) -> DemoReport:
    """Simulate the bundled CNN on its test split (the first ``num_samples`` images).

    Settings left as None take the calibrated defaults (``plain``: the
    toolbox's plain conversion and settings).
    Returns a :class:`DemoReport`; ``plot_dir`` also writes the plots there.
    """
    from .simulator import Simulator

    model = bundled_model(plain)
    x, y = bundled_test_set()
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        x, y = x[:num_samples], y[:num_samples]
    settings = demo_settings(model, plain)
    if dt is not None and duration is None:   # a new dt keeps the number of steps
        settings["duration"] = int(round(settings["duration"] / settings["dt"])) * dt
    for key, value in (("duration", duration), ("dt", dt), ("v_thresh", v_thresh), ("leak", leak)):
        if value is not None:
            settings[key] = value
    if batch_size is None:
        batch_size = 64   # small enough that the progress bar moves, large enough to keep cores busy
    sim = Simulator(model, backend=backend, batch_size=batch_size, num_threads=num_threads,
                    early_stop=early_stop, **settings)
    bar = _Progress() if progress else None
    try:
        result = sim.run(x, y, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    # Folding pooling enlarges the ANN that the SNN mirrors; compare with the ANN as trained.
    ann_ops = model.metadata.get("ann_operations_before_folding", {}).get(result.ops_convention, result.ann_ops)
    report = DemoReport(
        ann_accuracy=float(np.mean(ann_predictions(model, x) == y)), snn_accuracy=float(result.accuracy),
        mean_latency_steps=result.mean_latency_steps, spikes_per_neuron=result.spikes_per_neuron,
        synops_per_sample=result.synops_per_sample, ann_ops=float(ann_ops), wall_time=result.wall_time,
        samples_per_second=result.samples_per_second, num_samples=int(len(x)), steps=sim.steps,
        backend=sim.backend, settings=settings, result=result)
    if plot_dir is not None:
        from .plots import write_plots
        report.plots = write_plots(result, model, x, Path(plot_dir))
    return report


# ------------------------------------------------------------------ CLI
def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help="simulate the bundled digits CNN and compare it with its ANN",
        description="Load the bundled 8x8-digits CNN and its test split, simulate it as a TTFS SNN on the "
                    "best available backend, and print ANN versus SNN accuracy, latency, spikes, operations "
                    "and speed. Defaults: the settings found by `ttfs-native calibrate` on the calibration "
                    "split (stored with the model).")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "reference"])
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
    p.set_defaults(func=_demo_command)

    from .calibrate import add_calibrate_parser
    add_calibrate_parser(subparsers)


def _demo_command(args) -> int:
    report = run_demo(num_samples=args.num_samples, backend=args.backend, duration=args.duration, dt=args.dt,
                      v_thresh=args.v_thresh, leak=args.leak, plain=args.plain, batch_size=args.batch_size,
                      num_threads=args.threads, early_stop=args.early_stop, progress=not args.no_progress,
                      plot_dir=args.plot)
    print(report.table())
    for path in report.plots:
        print(f"plot written to {path}")
    return 0
