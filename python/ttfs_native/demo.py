"""The demo: a bundled CNN simulated on its test images and compared with its ANN.

``dataset="digits"`` (the default, quickest) or ``"mnist"`` (datasets.py):

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
weights, and the settings the folder carries (``model.simulation``) hold ``duration``,
``dt``, ``v_thresh`` and ``leak``. The bundled defaults: average pooling
folded into the next layer, percentile 99, per-layer thresholds conv1 x0.707
and dense x0.354, ``v_thresh`` 1.5, ``dt`` 0.5, ``duration`` 32 (64 steps),
no leak. ``--plain`` instead simulates the toolbox's plain conversion with
its settings (``v_thresh`` 1, ``dt`` 1, 64 steps).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import bundled_model, bundled_test_set
from .model import Model
from .model.ann import ann_predictions
from .model.settings import DEFAULT_CODING
from .progress import Progress
from .simulation import Simulator

# The toolbox's settings, for the plain conversion (and any model without a calibration record).
PLAIN_SIMULATION = {"coding": DEFAULT_CODING, "duration": 64.0, "dt": 1.0, "v_thresh": 1.0, "leak": False}


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
    dataset: str = "digits"
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
        net = {"digits": "8x8-digits CNN", "mnist": "MNIST LeNet-5"}.get(self.dataset, self.dataset)
        if s.get("coding", DEFAULT_CODING) == DEFAULT_CODING:
            how = f"v_thresh {s['v_thresh']:g}, leak {'on' if s['leak'] else 'off'}"
        else:
            w = s["window"]
            how = (f"coding {s['coding']}: input window {w['input_steps']}, layer windows "
                   + " + ".join(str(v) for v in w["steps"].values()))
        lines = [f"{net}, {self.num_samples} test samples, {self.steps} steps "
                 f"(duration {s['duration']:g}, dt {s['dt']:g}), {how}, backend {self.backend}",
                 f"{'':<{width}}  {'ANN':>10}  SNN"]
        lines += [f"{name:<{width}}  {ann:>10}  {snn}" for name, ann, snn in rows]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "ann_accuracy", "snn_accuracy", "mean_latency_steps", "spikes_per_neuron", "synops_per_sample",
            "ann_ops", "synops_ratio", "wall_time", "samples_per_second", "num_samples", "steps", "backend")}


def demo_settings(model: Model, plain: bool = False) -> dict:
    """Simulator settings of the demo: the calibrated ones, or the toolbox's with ``plain``."""
    return dict(PLAIN_SIMULATION if plain or not model.simulation else model.simulation)


def run_demo(num_samples: int | None = None, backend: str = "auto", duration: float | None = None,
             dt: float | None = None, v_thresh: float | None = None, leak: bool | None = None,
             plain: bool = False, batch_size: int | None = None, num_threads: int | None = None,
             early_stop: bool = False, progress: bool = False, plot_dir=None,
             dataset: str = "digits", coding: str = DEFAULT_CODING) -> DemoReport:
    """Simulate a bundled CNN (``dataset``) on its test images (the first ``num_samples``).

    Settings left as None take the calibrated defaults (``plain``: the
    toolbox's plain conversion and settings).
    Returns a :class:`DemoReport`; ``plot_dir`` also writes the plots there.
    """
    if coding != DEFAULT_CODING and (plain or v_thresh is not None or leak is not None):
        raise ValueError("plain, v_thresh and leak belong to the ttfs-dyn-thresh coding")
    model = bundled_model(plain, dataset, coding)
    x, y = bundled_test_set(dataset)
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        x, y = x[:num_samples], y[:num_samples]
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")   # before it rescales the duration
    settings = demo_settings(model, plain)
    if dt is not None and duration is None:   # a new dt keeps the number of steps
        settings["duration"] = int(round(settings["duration"] / settings["dt"])) * dt
    for key, value in (("duration", duration), ("dt", dt), ("v_thresh", v_thresh), ("leak", leak)):
        if value is not None:
            settings[key] = value
    if batch_size is None:
        batch_size = 64   # small enough that the progress bar moves, large enough to keep cores busy
    sim = Simulator.for_model(model, backend=backend, batch_size=batch_size, num_threads=num_threads,
                              early_stop=early_stop, **settings)
    bar = Progress() if progress else None
    try:
        result = sim.run(x, y, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    report = DemoReport(
        ann_accuracy=float(np.mean(ann_predictions(model, x) == y)), snn_accuracy=float(result.accuracy),
        mean_latency_steps=result.mean_latency_steps, spikes_per_neuron=result.spikes_per_neuron,
        synops_per_sample=result.synops_per_sample, ann_ops=float(result.ann_ops), wall_time=result.wall_time,
        samples_per_second=result.samples_per_second, num_samples=int(len(x)), steps=sim.steps,
        backend=sim.backend, settings=settings, result=result, dataset=dataset)
    if plot_dir is not None:
        from .plots import write_plots
        report.plots = write_plots(result, model, x, Path(plot_dir))
    return report
