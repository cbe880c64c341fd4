"""Search the conversion's free parameters with the fast simulator.

A converted TTFS network has a few knobs besides its weights. This module
simulates the network on a labelled *calibration* set (never the test set)
for each candidate and reports SNN accuracy against the number of steps:

1. a grid over folding average pooling into the next weighted layer or not
   (``fold_average_pooling`` in convert.py: the same ANN with fewer spiking
   layers), the normalisation ``percentile`` (normalise.py), the base
   threshold ``v_thresh``, the step ``dt`` (with ``duration = max_steps * dt``,
   so every candidate runs ``max_steps`` steps) and the membrane ``leak``;
2. from the best grid point, a coordinate search over a threshold scale per
   weighted layer (``layer_scales``, half-octave steps). The simulator has one
   ``v_thresh``; dividing a layer's kernel and bias by ``k`` is exactly a base
   threshold ``k * v_thresh`` for that layer alone: its membrane and missing
   impulse are linear in them, while its spike signal (``dt``) and prospective
   flags are not changed (with ``leak`` on, the leak also grows by ``k``
   relative to the membrane). So the calibrated model carries these scales in
   its weights and records them in ``metadata["calibration"]``; use
   :func:`ann_view` to get its ANN back.

One run of ``max_steps`` steps gives the accuracy after every smaller number
of steps as well: with ``tau_refrac = duration`` no neuron fires twice, and the
simulation is causal, so the first ``t`` steps of a long run equal a run of
``t`` steps. That is the accuracy-versus-steps trade-off the table shows.

Candidates are ranked by accuracy after ``max_steps`` steps, then by the mean
accuracy over all steps (earlier decisions win ties).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from ..model import Model, check_input
from ..model.ann import ann_predictions
from ..model.transforms import ann_view, apply_layer_scales, fold_average_pooling
from ..simulation import Simulator
from ..simulation.simulator import check_labels
from .normalise import check_percentile, normalise

DEFAULT_PERCENTILES = (99.0, 99.9, 99.99, 100.0)
DEFAULT_V_THRESH = (0.75, 1.0, 1.5)
DEFAULT_DTS = (0.5, 1.0, 2.0)
DEFAULT_LEAKS = (False, True)
# half-octave steps: scales stay powers of sqrt(2)
DEFAULT_LAYER_FACTORS = tuple(round(2 ** (k / 2), 4) for k in (-2, -1, 1, 2, 3, 4))
TABLE_STEPS = (8, 16, 32, 48, 64)


@dataclass(frozen=True)
class Setting:
    """One point of the search: how to normalise, scale and simulate."""

    percentile: float
    v_thresh: float = 1.0
    dt: float = 1.0
    leak: bool = False
    layer_scales: tuple = ()   # ((weighted layer name, threshold scale), ...), scale != 1 only
    fold_pooling: bool = False

    def simulator_kwargs(self, max_steps: int) -> dict:
        return dict(duration=max_steps * self.dt, dt=self.dt, v_thresh=self.v_thresh, leak=self.leak)

    def describe(self) -> str:
        scales = ", ".join(f"{n} x{k:g}" for n, k in self.layer_scales)
        return (("pooling folded, " if self.fold_pooling else "")
                + f"percentile {self.percentile:g}, v_thresh {self.v_thresh:g}, dt {self.dt:g}, "
                f"leak {'on' if self.leak else 'off'}" + (f", layer thresholds {scales}" if scales else ""))


@dataclass
class Trial:
    """The simulated outcome of one setting on the calibration set."""

    setting: Setting
    accuracy_t: np.ndarray          # (max_steps,) accuracy after each step
    mean_latency_steps: float
    spikes_per_neuron: float
    synops_ratio: float             # synaptic operations / ANN operations

    @property
    def accuracy(self) -> float:
        return float(self.accuracy_t[-1])

    @property
    def score(self) -> tuple:
        return (round(self.accuracy, 9), round(float(self.accuracy_t.mean()), 9))

    def accuracy_at(self, steps: int) -> float:
        return float(self.accuracy_t[min(steps, len(self.accuracy_t)) - 1])


@dataclass
class CalibrationResult:
    """All trials, the best one, and the calibrated model it describes."""

    ann_accuracy: float
    max_steps: int
    trials: list
    best: Trial
    model: Model
    num_samples: int
    wall_time: float
    plain: Trial | None = None      # the toolbox's settings: percentile 99.9, v_thresh 1, dt 1, not folded

    @property
    def simulator_kwargs(self) -> dict:
        """Simulator settings that go with :attr:`model`."""
        return self.best.setting.simulator_kwargs(self.max_steps)

    def table(self, top: int = 12) -> str:
        """The best ``top`` trials (and the plain conversion): accuracy after several step counts."""
        steps = [s for s in TABLE_STEPS if s < self.max_steps] + [self.max_steps]
        head = f"{'fold':>4} {'percentile':>10} {'v_thresh':>8} {'dt':>5} {'leak':>4} " + \
            " ".join(f"{f'@{s}':>6}" for s in steps) + f" {'latency':>7} {'ops/ANN':>7}  layer thresholds"
        rows = [head]
        ranked = sorted(self.trials, key=lambda t: t.score, reverse=True)[:top]
        if self.plain is not None and self.plain not in ranked:
            ranked.append(self.plain)
        for t in ranked:
            s = t.setting
            scales = ", ".join(f"{n} x{k:g}" for n, k in s.layer_scales) or "-"
            tag = "  (plain)" if t is self.plain else ("  <- best" if t is self.best else "")
            rows.append(f"{'yes' if s.fold_pooling else 'no':>4} {s.percentile:>10g} {s.v_thresh:>8g} "
                        f"{s.dt:>5g} {'on' if s.leak else 'off':>4} "
                        + " ".join(f"{t.accuracy_at(k):>6.3f}" for k in steps)
                        + f" {t.mean_latency_steps:>7.1f} {t.synops_ratio:>7.3f}  {scales}{tag}")
        return "\n".join(rows)

    def tradeoff(self) -> list:
        """[(steps, best accuracy after that many steps, its setting)] for the table's step counts."""
        out = []
        for k in [s for s in TABLE_STEPS if s < self.max_steps] + [self.max_steps]:
            t = max(self.trials, key=lambda t: (t.accuracy_at(k), t.score))
            out.append((k, t.accuracy_at(k), t.setting))
        return out

    def summary(self) -> str:
        lines = [f"calibration set: {self.num_samples} samples, ANN accuracy {self.ann_accuracy:.4f}; "
                 f"{len(self.trials)} settings simulated for {self.max_steps} steps in {self.wall_time:.1f} s"]
        if self.plain is not None:
            lines.append(f"plain conversion (toolbox: percentile 99.9, v_thresh 1, dt 1): SNN accuracy "
                         f"{self.plain.accuracy:.4f}")
        lines.append(f"best: {self.best.setting.describe()}: SNN accuracy {self.best.accuracy:.4f} "
                     f"after {self.max_steps} steps")
        lines.append("")
        lines.append(self.table())
        lines.append("")
        lines.append("best accuracy within a step budget:")
        for k, acc, s in self.tradeoff():
            lines.append(f"  {k:>4} steps: {acc:.4f}  ({s.describe()})")
        return "\n".join(lines)


def calibrate(model_or_ann: Model, x_cal, y_cal, max_steps: int = 64,
              percentiles=DEFAULT_PERCENTILES, v_thresh=DEFAULT_V_THRESH, dts=DEFAULT_DTS,
              leaks=DEFAULT_LEAKS, fold_pooling=(False, True), layer_factors=DEFAULT_LAYER_FACTORS,
              layer_rounds: int = 2,
              backend: str = "auto", num_threads: int | None = None, log=None) -> CalibrationResult:
    """Search fold x percentile x v_thresh x dt x leak, then per-layer threshold scales.

    ``model_or_ann``: the converted ANN, normalised or not (normalisation is
    redone for every percentile, and it does not depend on an earlier one).
    ``x_cal``, ``y_cal``: the labelled calibration set. ``fold_pooling``: the
    structures tried (folding is skipped when the model has nothing to fold).
    ``layer_factors``: multipliers tried per weighted layer and round (empty:
    skip stage 2). The plain conversion (percentile 99.9, ``v_thresh`` 1,
    ``dt`` 1, no leak, not folded) is always simulated too, for reference.
    ``log``: optional callable receiving one line per simulated setting.
    Returns a :class:`CalibrationResult` whose ``model`` is normalised and
    scaled for the best setting and whose ``simulator_kwargs`` go with it.
    """
    if not isinstance(model_or_ann, Model):
        raise TypeError(f"model_or_ann must be a ttfs_native Model, got {type(model_or_ann).__name__}")
    model_or_ann = ann_view(model_or_ann)
    x = check_input(model_or_ann, x_cal, "calibration input", allow_empty=False)
    y = check_labels(y_cal, x.shape[0], model_or_ann.num_classes)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    percentiles = [check_percentile(p) for p in percentiles]
    structures = {False: model_or_ann}
    folded = fold_average_pooling(model_or_ann)
    if folded is not model_or_ann:
        structures[True] = folded
    folds = sorted({bool(f) for f in fold_pooling if bool(f) in structures}) or [False]
    for name, values in (("v_thresh", v_thresh), ("dts", dts)):
        if not values or any(not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) for v in values):
            raise ValueError(f"{name} must be a non-empty list of positive numbers, got {list(values)!r}")
    if not percentiles or not leaks:
        raise ValueError("percentiles and leaks must not be empty")
    log = log or (lambda line: None)
    start = time.perf_counter()
    normalised: dict = {}

    def normalised_model(setting: Setting) -> Model:
        key = (setting.fold_pooling, setting.percentile)
        if key not in normalised:
            normalised[key] = normalise(structures[setting.fold_pooling], x, setting.percentile)
        return apply_layer_scales(normalised[key], setting.layer_scales)

    ann_accuracy = float(np.mean(ann_predictions(model_or_ann, x) == y))
    trials: dict = {}

    def run(setting: Setting) -> Trial:
        if setting in trials:
            return trials[setting]
        model = normalised_model(setting)
        sim = Simulator(model, backend=backend, num_threads=num_threads, **setting.simulator_kwargs(max_steps))
        r = sim.run(x, y)
        ann_ops = r.ann_ops   # the ANN as trained (connectivity.ann_operations_as_trained)
        trial = Trial(setting, r.accuracy_t, r.mean_latency_steps, r.spikes_per_neuron,
                      r.synops_per_sample / ann_ops if ann_ops else float("nan"))
        trials[setting] = trial
        log(f"{trial.accuracy:.4f}  {setting.describe()}")
        return trial

    plain = run(Setting(99.9, 1.0, 1.0, False))
    for fold, p, v, dt, leak in itertools.product(folds, percentiles, v_thresh, dts, leaks):
        run(Setting(p, float(v), float(dt), bool(leak), fold_pooling=fold))
    best = max(trials.values(), key=lambda t: t.score)

    # layers with a threshold of their own (a residual branch shares its Add's)
    weighted = [s.name for s in model_or_ann.layers if (s.is_weighted and not s.is_branch) or s.is_add]
    for _ in range(layer_rounds if layer_factors else 0):
        improved = False
        for name in weighted:
            current = dict(best.setting.layer_scales)
            for factor in layer_factors:
                scales = dict(current)
                scales[name] = float(f"{current.get(name, 1.0) * float(factor):.4g}")
                if abs(math.log2(scales[name])) < 0.01:
                    del scales[name]
                s = best.setting
                trial = run(Setting(s.percentile, s.v_thresh, s.dt, s.leak, tuple(sorted(scales.items())),
                                    s.fold_pooling))
                if trial.score > best.score:
                    best, improved = trial, True
        if not improved:
            break

    model = normalised_model(best.setting)
    s = best.setting
    model.metadata["calibration"] = {
        "fold_pooling": s.fold_pooling, "percentile": s.percentile,
        "layer_threshold_scales": dict(s.layer_scales),
        "simulation": {"duration": max_steps * s.dt, "dt": s.dt, "v_thresh": s.v_thresh, "leak": s.leak},
        "calibration_samples": int(x.shape[0]), "calibration_snn_accuracy": best.accuracy,
        "calibration_ann_accuracy": ann_accuracy}
    return CalibrationResult(ann_accuracy=ann_accuracy, max_steps=int(max_steps), trials=list(trials.values()),
                             best=best, model=model, num_samples=int(x.shape[0]),
                             wall_time=time.perf_counter() - start, plain=plain)
