"""Search the conversion's free parameters with the fast simulator.

A converted TTFS network has a few knobs besides its weights. This module
simulates the network on a labelled *calibration* set (never the test set)
for candidate settings and keeps the one that holds up on data it was not
chosen on:

0. The calibration set is split once (fixed seed): a *fit* part on which the
   search runs and a *held-out* part (``holdout``, default 30 %) on which the
   few finalists are compared. Choosing among hundreds of settings on the
   same images overfits them (measured: 1.9 points on an MNIST LeNet);
   choosing among a handful on fresh images does not.
1. A grid, by successive halving: every setting of fold x per-channel x
   percentile x ``v_thresh`` x ``dt`` x ``leak`` runs on a small slice of the
   fit part; the best third goes on to three times as many samples, and so
   on until the survivors have seen the whole fit part. Settings: folding
   average pooling into the next weighted layer or not
   (``fold_average_pooling``: the same ANN with fewer spiking layers), one
   normalisation ``lambda`` per layer or per output channel
   (normalise.py), the normalisation ``percentile``, the base threshold
   ``v_thresh``, the step ``dt`` (``duration = max_steps * dt``, so every
   candidate runs ``max_steps`` steps) and the membrane ``leak``. The ANN's
   activations are computed once per structure (normalise.ActivationStats)
   and every percentile is read from them.
2. Per-layer threshold balancing: from the best grid settings, a coordinate
   search over a threshold scale per weighted layer (``layer_scales``,
   half-octave steps), each layer's candidates again by successive halving.
   The simulator has one ``v_thresh``; dividing a layer's kernel and bias by
   ``k`` is exactly a base threshold ``k * v_thresh`` for that layer alone: its
   membrane and missing impulse are linear in them, while its spike signal
   (``dt``) and prospective flags are not changed (with ``leak`` on, the leak
   also grows by ``k`` relative to the membrane). So the calibrated model
   carries these scales in its weights and records them in
   ``metadata["calibration"]``; use :func:`ann_view` to get its ANN back.
   In a network with residual Adds (only there), each round first searches a
   *shortcut factor* per Add (``shortcut_factors``, absolute): the Add's
   factor on its shortcut inbounds (transforms.shortcut_inbounds: an identity
   shortcut, a 1x1 projection) multiplied by ``alpha``. In the time code a
   shortcut's source lies fewer layers from the input than the branch's, so
   its spikes arrive earlier and its ramp has a head start over the branch's
   later spikes; ``alpha`` < 1 weighs it down in the SNN. Unlike a threshold
   scale this changes the function the Add's neurons compute, so it is an SNN
   setting only: it is recorded in ``metadata["calibration"]``
   (``shortcut_scales``) and :func:`ann_view` undoes it. ``layer_rounds``
   rounds at most (shortcuts, then layer thresholds), fewer once a round
   improves nothing.
3. The best few settings of the fit part (and the plain conversion) run on
   the held-out part; the best there wins, and its held-out accuracy is the
   estimate reported.

Settings are ranked by a *soft accuracy*: the mean of "correct after
``max_steps``" and of a margin in [0, 1] per sample, (1 + clip(d, -2, 2) / 2) / 2
where ``d`` is how many steps the label's output neuron fired before the
first other output neuron (negative when after; a tie is 0; never firing
counts as firing after the last step). It orders settings like accuracy but
with less noise: a sample decided by a tie or one step counts less than one
decided by a wide margin. The plain conversion (percentile 99.9,
``v_thresh`` 1, ``dt`` 1, no leak, no folding, one ``lambda`` per layer) is
always simulated too, for reference.

One run of ``max_steps`` steps gives the accuracy after every smaller number
of steps as well: with ``tau_refrac = duration`` no neuron fires twice, and the
simulation is causal, so the first ``t`` steps of a long run equal a run of
``t`` steps. That is the accuracy-versus-steps trade-off the table shows.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from ..model import Model, check_input
from ..model.ann import ann_predictions
from ..model.settings import DEFAULT_CODING
from ..model.transforms import (ann_view, apply_layer_scales, apply_shortcut_scales, fold_average_pooling,
                                shortcut_inbounds)
from ..simulation import Simulator
from ..simulation.simulator import check_labels
from .normalise import ActivationStats, check_percentile, normalise

DEFAULT_PERCENTILES = (99.9, 99.99)
DEFAULT_V_THRESH = (1.0, 1.5, 2.0)
DEFAULT_DTS = (0.5, 1.0)
DEFAULT_LEAKS = (False,)
DEFAULT_PER_CHANNEL = (False, True)
# half-octave steps: scales stay powers of sqrt(2)
DEFAULT_LAYER_FACTORS = tuple(round(2 ** (k / 2), 4) for k in (-2, -1, 1, 2))
# shortcut factors of residual Adds (absolute; 1 = the ANN's)
DEFAULT_SHORTCUT_FACTORS = (0.7, 0.5, 0.35, 0.25)
DEFAULT_HOLDOUT = 0.3
TABLE_STEPS = (8, 16, 32, 48, 64)
MARGIN_STEPS = 2          # margins beyond this many steps count as sure
FIRST_RUNG = 96           # samples every grid setting sees first
FINALISTS = 4             # settings compared on the held-out part


@dataclass(frozen=True)
class Setting:
    """One point of the search: how to normalise, scale and simulate."""

    percentile: float
    v_thresh: float = 1.0
    dt: float = 1.0
    leak: bool = False
    layer_scales: tuple = ()   # ((weighted layer name, threshold scale), ...), scale != 1 only
    fold_pooling: bool = False
    per_channel: bool = False
    shortcut_scales: tuple = ()  # ((Add name, shortcut factor), ...), factor != 1 only

    def simulator_kwargs(self, max_steps: int) -> dict:
        return dict(duration=max_steps * self.dt, dt=self.dt, v_thresh=self.v_thresh, leak=self.leak)

    def describe(self) -> str:
        scales = ", ".join(f"{n} x{k:g}" for n, k in self.layer_scales)
        shortcuts = ", ".join(f"{n} x{a:g}" for n, a in self.shortcut_scales)
        return (("pooling folded, " if self.fold_pooling else "")
                + ("per-channel " if self.per_channel else "")
                + f"percentile {self.percentile:g}, v_thresh {self.v_thresh:g}, dt {self.dt:g}, "
                f"leak {'on' if self.leak else 'off'}" + (f", shortcuts {shortcuts}" if shortcuts else "")
                + (f", layer thresholds {scales}" if scales else ""))


PLAIN = Setting(99.9, 1.0, 1.0, False)


@dataclass
class Trial:
    """The simulated outcome of one setting on some samples."""

    setting: Setting
    num_samples: int
    accuracy_t: np.ndarray          # (max_steps,) accuracy after each step
    margin: float                   # mean per-sample margin in [0, 1] (see the module doc)
    mean_latency_steps: float
    spikes_per_neuron: float
    synops_ratio: float             # synaptic operations / ANN operations
    decided: float                  # fraction of samples with an output spike

    @property
    def accuracy(self) -> float:
        return float(self.accuracy_t[-1])

    @property
    def score(self) -> float:
        return round(0.5 * (self.accuracy + self.margin), 12)

    def accuracy_at(self, steps: int) -> float:
        return float(self.accuracy_t[min(steps, len(self.accuracy_t)) - 1])


@dataclass
class CalibrationResult:
    """The trials on the fit part, the chosen one, and the calibrated model it describes."""

    ann_accuracy: float             # on the whole calibration set
    max_steps: int
    trials: list                    # every setting simulated on the whole fit part
    best: Trial                     # the chosen setting, on the fit part
    model: Model                    # normalised and scaled for it, with its simulation settings
    num_samples: int
    wall_time: float
    plain: Trial | None = None      # the toolbox's settings on the fit part
    holdout: list | None = None     # the finalists on the held-out part (best first)
    holdout_ann_accuracy: float = float("nan")
    simulated_samples: int = 0      # samples x settings simulated in all

    @property
    def simulator_kwargs(self) -> dict:
        """Simulator settings that go with :attr:`model`."""
        return self.best.setting.simulator_kwargs(self.max_steps)

    @property
    def holdout_best(self) -> Trial | None:
        return self.holdout[0] if self.holdout else None

    def table(self, top: int = 10) -> str:
        """The best ``top`` settings on the fit part (and the plain one): accuracy after several step counts."""
        steps = [s for s in TABLE_STEPS if s < self.max_steps] + [self.max_steps]
        head = f"{'fold':>4} {'chan':>4} {'pct':>6} {'v_th':>5} {'dt':>5} {'leak':>4} " + \
            " ".join(f"{f'@{s}':>6}" for s in steps) + f" {'margin':>6} {'latency':>7} {'ops/ANN':>7}  layer thresholds"
        rows = [head]
        ranked = sorted(self.trials, key=lambda t: t.score, reverse=True)[:top]
        if self.plain is not None and self.plain not in ranked:
            ranked.append(self.plain)
        for t in ranked:
            s = t.setting
            scales = ", ".join([f"{n} x{k:g}" for n, k in s.layer_scales]
                               + [f"{n} shortcut x{a:g}" for n, a in s.shortcut_scales]) or "-"
            tag = "  (plain)" if t is self.plain else ("  <- chosen" if t is self.best else "")
            rows.append(f"{'yes' if s.fold_pooling else 'no':>4} {'yes' if s.per_channel else 'no':>4} "
                        f"{s.percentile:>6g} {s.v_thresh:>5g} {s.dt:>5g} {'on' if s.leak else 'off':>4} "
                        + " ".join(f"{t.accuracy_at(k):>6.3f}" for k in steps)
                        + f" {t.margin:>6.3f} {t.mean_latency_steps:>7.1f} {t.synops_ratio:>7.3f}  {scales}{tag}")
        return "\n".join(rows)

    def summary(self) -> str:
        n_fit = self.best.num_samples
        lines = [f"calibration set: {self.num_samples} samples ({n_fit} to search, "
                 f"{self.num_samples - n_fit} held out), ANN accuracy {self.ann_accuracy:.4f}; "
                 f"{self.simulated_samples} sample simulations of {self.max_steps} steps in {self.wall_time:.1f} s"]
        if self.plain is not None:
            lines.append(f"plain conversion (toolbox: percentile 99.9, v_thresh 1, dt 1): SNN accuracy "
                         f"{self.plain.accuracy:.4f} on the search part")
        lines += ["", "best settings on the search part:", self.table()]
        if self.holdout:
            lines += ["", f"finalists on the {self.holdout[0].num_samples} held-out samples "
                          f"(ANN accuracy {self.holdout_ann_accuracy:.4f}):"]
            lines += [f"  {t.accuracy:.4f} (margin {t.margin:.3f})  {t.setting.describe()}" for t in self.holdout]
        lines += ["", f"chosen: {self.best.setting.describe()}; {self.max_steps} steps"]
        return "\n".join(lines)


class _Search:
    """Simulates settings on slices of the calibration set, caching trials.

    ``mapper``: optional ``mapper(fn, items, setup, setup_args)`` yielding
    ``fn(setup(*setup_args), item)`` for each item, in order, e.g. on Ray
    workers (ttfs_native.ray.mapper); the trials of a rung are then simulated
    in parallel, and the result is the same as without it."""

    def __init__(self, structures: dict, stats: dict, x, y, max_steps, backend, num_threads, mapper=None):
        self.structures, self.stats = structures, stats
        self.x, self.y, self.max_steps = x, y, max_steps
        self.backend, self.num_threads = backend, num_threads
        self.mapper = mapper
        self.trials: dict = {}
        self.simulated = 0
        self.tick = None          # progress callback of the current stage

    def state(self) -> tuple:
        """What a worker needs to simulate trials (see :func:`_worker_search`)."""
        return (self.structures, self.stats, self.x, self.y, self.max_steps, self.backend, self.num_threads)

    def run_many(self, settings: list, rows: slice) -> list:
        """:meth:`run` of each setting, in order (on the mapper's workers where given)."""
        todo = [s for s in dict.fromkeys(settings) if (s, rows.start, rows.stop) not in self.trials]
        if self.mapper is not None and len(todo) > 1:
            items = [(s, rows.start, rows.stop) for s in todo]
            for (s, lo, hi), trial in zip(items, self.mapper(_worker_trial, items, _worker_search, (self.state(),))):
                self._record((s, lo, hi), trial)
        return [self.run(s, rows) for s in settings]

    def _record(self, key, trial: Trial) -> Trial:
        self.trials[key] = trial
        self.simulated += trial.num_samples
        if self.tick is not None:
            self.tick(trial.num_samples)
        return trial

    def model(self, s: Setting) -> Model:
        base = self.structures[s.fold_pooling]
        model = normalise(base, None, s.percentile, per_channel=s.per_channel, stats=self.stats[s.fold_pooling])
        return apply_shortcut_scales(apply_layer_scales(model, s.layer_scales), s.shortcut_scales)

    def run(self, s: Setting, rows: slice) -> Trial:
        key = (s, rows.start, rows.stop)
        if key in self.trials:
            return self.trials[key]
        model = self.model(s)
        x, y = self.x[rows], self.y[rows]
        sim = Simulator(model, backend=self.backend, num_threads=self.num_threads,
                        **s.simulator_kwargs(self.max_steps))
        r = sim.run(x, y)
        ann_ops = r.ann_ops   # the ANN as trained (connectivity.ann_operations_as_trained)
        trial = Trial(s, len(y), r.accuracy_t, _margin(r, y, s.dt, self.max_steps), r.mean_latency_steps,
                      r.spikes_per_neuron, r.synops_per_sample / ann_ops if ann_ops else float("nan"),
                      float(np.mean(r.predictions >= 0)))
        return self._record(key, trial)

    def halving(self, settings: list, n: int, first: int = FIRST_RUNG, keep: int = 1) -> list:
        """Successive halving (by thirds) of ``settings`` on ``[0, first)``, ``[0, 3 first)``,
        ... up to the whole fit part ``[0, n)``; the trials of the last rung, best first."""
        settings = list(dict.fromkeys(settings))
        size = min(n, first)
        while True:
            trials = sorted(self.run_many(settings, slice(0, size)), key=lambda t: t.score, reverse=True)
            if size >= n:
                return trials
            settings = [t.setting for t in trials[:max(keep, math.ceil(len(trials) / 3))]]
            size = min(n, size * 3)

    @staticmethod
    def cost(count: int, n: int, first: int = FIRST_RUNG, keep: int = 1) -> int:
        """Samples :meth:`halving` simulates for ``count`` settings (for progress bars)."""
        total, size = 0, min(n, first)
        while True:
            total += count * size
            if size >= n:
                return total
            count, size = max(keep, math.ceil(count / 3)), min(n, size * 3)


def _worker_search(state: tuple) -> _Search:
    """A worker's own search over the shared calibration data (built once per worker;
    one object, so that the statistics still belong to their structures)."""
    return _Search(*state)


def _worker_trial(search: _Search, item) -> Trial:
    setting, lo, hi = item
    return search.run(setting, slice(lo, hi))


def _margin(r, y: np.ndarray, dt: float, max_steps: int) -> float:
    """Mean over samples of (1 + clip(d, -M, M) / M) / 2, d = steps by which the
    label's output neuron fired before the first other output neuron."""
    t = r.first_spike_times[next(reversed(r.first_spike_times))].reshape(len(y), -1)
    steps = np.where(t > 0, np.rint(t / dt), max_steps + 1.0)
    own = steps[np.arange(len(y)), y]
    others = steps.copy()
    others[np.arange(len(y)), y] = np.inf
    d = np.clip(others.min(axis=1) - own, -MARGIN_STEPS, MARGIN_STEPS)
    return float(np.mean(0.5 + 0.5 * d / MARGIN_STEPS))


def _layer_candidates(setting: Setting, name: str, factors: list) -> list:
    """``setting`` with layer ``name``'s threshold scale multiplied by each factor."""
    out = []
    for factor in factors:
        scales = dict(setting.layer_scales)
        scales[name] = float(f"{scales.get(name, 1.0) * factor:.4g}")
        if abs(math.log2(scales[name])) < 0.01:
            del scales[name]
        out.append(replace(setting, layer_scales=tuple(sorted(scales.items()))))
    return out


def _shortcut_candidates(setting: Setting, name: str, factors: list) -> list:
    """``setting`` with Add ``name``'s shortcut factor set to each of ``factors`` (absolute)."""
    out = []
    for alpha in factors:
        alphas = dict(setting.shortcut_scales)
        alphas[name] = alpha
        if alpha == 1.0:
            del alphas[name]
        out.append(replace(setting, shortcut_scales=tuple(sorted(alphas.items()))))
    return out


def _positive_list(name: str, values) -> list:
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                         for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive numbers, got {values!r}")
    return [float(v) for v in values]


def split_calibration(n: int, holdout: float) -> tuple:
    """(fit rows, held-out rows): a fixed shuffle of range(n) (seed 0)."""
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    n_hold = int(round(n * holdout))
    if holdout > 0 and (n_hold < 1 or n - n_hold < 1):
        raise ValueError(f"{n} calibration samples cannot be split {1 - holdout:g} / {holdout:g} into a search "
                         "part and a held-out part; give more samples or holdout=0")
    order = np.random.default_rng(0).permutation(n)
    return np.sort(order[:n - n_hold]), np.sort(order[n - n_hold:])


def calibrate(model_or_ann: Model, x_cal, y_cal, max_steps: int = 64,
              percentiles=DEFAULT_PERCENTILES, v_thresh=DEFAULT_V_THRESH, dts=DEFAULT_DTS,
              leaks=DEFAULT_LEAKS, fold_pooling=(False, True), per_channel=DEFAULT_PER_CHANNEL,
              layer_factors=DEFAULT_LAYER_FACTORS, layer_rounds: int = 1,
              shortcut_factors=DEFAULT_SHORTCUT_FACTORS, holdout: float = DEFAULT_HOLDOUT,
              backend: str = "auto", num_threads: int | None = None, log=None,
              progress=None, mapper=None) -> CalibrationResult:
    """Search the grid, then per-layer threshold scales, choose on a held-out part.

    ``model_or_ann``: the converted ANN, normalised or not (normalisation is
    redone for every percentile, and it does not depend on an earlier one).
    ``x_cal``, ``y_cal``: the labelled calibration set (e.g. a validation
    split of the training data). ``fold_pooling``, ``per_channel``: the
    structures and normalisations tried (folding is skipped when the model
    has nothing to fold). ``layer_factors``: multipliers tried per weighted
    layer and round (empty: skip stage 2). ``shortcut_factors``: the factors
    tried on each residual Add's shortcut inbounds (empty: keep the ANN's;
    networks without a residual Add skip this). ``holdout``: the fraction of the
    calibration set kept to choose between the finalists (0: choose on the
    search part). ``log``: optional callable receiving a line per stage.
    ``progress``: optional ``progress(stage) -> callback(done, total)``
    factory (e.g. ``lambda stage: Progress(desc=stage)``); callbacks with a
    ``close()`` are closed after their stage. ``mapper``: simulate the settings
    of each stage in parallel, e.g. ``ttfs_native.ray.mapper(workers=4)``
    (same result as without).
    Returns a :class:`CalibrationResult` whose ``model`` is normalised and
    scaled for the chosen setting and carries its simulation settings.
    """
    start = time.perf_counter()
    if not isinstance(model_or_ann, Model):
        raise TypeError(f"model_or_ann must be a ttfs_native Model, got {type(model_or_ann).__name__}")
    ann = ann_view(model_or_ann)
    x = check_input(ann, x_cal, "calibration input", allow_empty=False)
    y = check_labels(y_cal, x.shape[0], ann.num_classes)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    percentiles = [check_percentile(p) for p in percentiles]
    v_thresh, dts = _positive_list("v_thresh", v_thresh), _positive_list("dts", dts)
    layer_factors = _positive_list("layer_factors", layer_factors) if len(layer_factors) else []
    shortcut_factors = _positive_list("shortcut_factors", shortcut_factors) if len(shortcut_factors) else []
    if not percentiles or not leaks or not per_channel:
        raise ValueError("percentiles, leaks and per_channel must not be empty")
    fit_rows, hold_rows = split_calibration(len(y), holdout)
    log = log or (lambda line: None)

    structures = {False: ann}
    folded = fold_average_pooling(ann)
    if folded is not ann:
        structures[True] = folded
    folds = sorted({bool(f) for f in fold_pooling if bool(f) in structures}) or [False]
    # normalisation statistics on the whole calibration set (no labels involved), once per structure
    stats = {f: ActivationStats(m, x) for f, m in structures.items()}
    ann_pred = ann_predictions(ann, x)
    ann_accuracy = float(np.mean(ann_pred == y))
    order = np.concatenate([fit_rows, hold_rows])
    search = _Search(structures, stats, x[order], y[order], int(max_steps), backend, num_threads, mapper)
    n_fit, n_all = len(fit_rows), len(order)

    def stage(name: str, total: int):
        bar = progress(name) if progress is not None else None
        done = [0]

        def tick(k):
            done[0] += k
            bar(min(done[0], total), total)
        search.tick = tick if bar is not None else None
        return bar

    def end(bar):
        if bar is not None and hasattr(bar, "close"):
            bar.close()

    # 1. the grid
    grid = [Setting(p, v, dt, bool(leak), (), fold, bool(pc)) for fold, pc, p, v, dt, leak in
            itertools.product(folds, sorted({bool(c) for c in per_channel}), percentiles, v_thresh, dts, leaks)]
    grid = list(dict.fromkeys([PLAIN] + grid))
    bar = stage("grid", search.cost(len(grid), n_fit, keep=2))
    ranked = search.halving(grid, n_fit, keep=2)
    end(bar)
    plain = search.run(PLAIN, slice(0, n_fit))
    if all(t.decided == 0 for t in ranked):
        raise ValueError(f"no output neuron fired within {max_steps} steps on any calibration sample for any "
                         "setting tried; the ANN's outputs may never be positive, or max_steps is too small")
    log(f"grid: {len(grid)} settings; best on {n_fit} samples: {ranked[0].accuracy:.4f}  "
        f"{ranked[0].setting.describe()}")

    best = ranked[0]
    # 2. coordinate search from the best grid setting, per round: each residual Add's
    # shortcut factor (networks with an Add only), then each layer's threshold scale
    # (layers with a threshold of their own: a residual branch shares its Add's)
    structure = structures[best.setting.fold_pooling]
    shortcuts = list(shortcut_inbounds(structure)) if shortcut_factors else []
    weighted = [s.name for s in structure.layers if (s.is_weighted and not s.is_branch) or s.is_add] \
        if layer_factors else []
    rounds = layer_rounds if (shortcuts or weighted) else 0
    bar = stage("layer thresholds" + (" and shortcuts" if shortcuts else ""), rounds * (
        len(shortcuts) * search.cost(len(shortcut_factors) + 1, n_fit, 3 * FIRST_RUNG)
        + len(weighted) * search.cost(len(layer_factors) + 1, n_fit, 3 * FIRST_RUNG)))
    for _ in range(rounds):
        improved = False
        for kind, name in [("shortcut", n) for n in shortcuts] + [("layer", n) for n in weighted]:
            candidates = [best.setting] + (_shortcut_candidates(best.setting, name, shortcut_factors)
                                           if kind == "shortcut" else
                                           _layer_candidates(best.setting, name, layer_factors))
            top = search.halving(candidates, n_fit, first=3 * FIRST_RUNG)[0]
            if top.score > best.score:
                best, improved = top, True
        if not improved:
            break
    end(bar)
    log(f"layer thresholds{' and shortcuts' if shortcuts else ''}: best on {n_fit} samples: "
        f"{best.accuracy:.4f}  {best.setting.describe()}")

    # 3. finalists on the held-out part
    full = {t.setting: t for (s, lo, hi), t in search.trials.items() if lo == 0 and hi == n_fit}
    finalists = sorted(full.values(), key=lambda t: t.score, reverse=True)[:FINALISTS]
    holdout_trials = None
    holdout_ann = float("nan")
    if n_all > n_fit:
        if plain not in finalists:
            finalists.append(plain)
        bar = stage("held-out check", len(finalists) * (n_all - n_fit))
        holdout_trials = sorted(search.run_many([t.setting for t in finalists], slice(n_fit, n_all)),
                                key=lambda t: (t.score, full[t.setting].score), reverse=True)
        end(bar)
        best = full[holdout_trials[0].setting]
        holdout_ann = float(np.mean(ann_pred[hold_rows] == y[hold_rows]))
        log(f"held out: {holdout_trials[0].accuracy:.4f} on {n_all - n_fit} samples (ANN {holdout_ann:.4f})  "
            f"{best.setting.describe()}")
    else:
        best = finalists[0]

    s = best.setting
    model = search.model(s)
    model.metadata["calibration"] = {
        "fold_pooling": s.fold_pooling, "per_channel": s.per_channel, "percentile": s.percentile,
        "layer_threshold_scales": dict(s.layer_scales),
        **({"shortcut_scales": dict(s.shortcut_scales)} if s.shortcut_scales else {}),
        "calibration_samples": int(n_all), "held_out_samples": int(n_all - n_fit),
        "search_snn_accuracy": best.accuracy,
        "held_out_snn_accuracy": holdout_trials[0].accuracy if holdout_trials else None,
        "calibration_ann_accuracy": ann_accuracy}
    model.simulation = {"coding": DEFAULT_CODING, **s.simulator_kwargs(int(max_steps))}
    return CalibrationResult(ann_accuracy=ann_accuracy, max_steps=int(max_steps), trials=list(full.values()),
                             best=best, model=model, num_samples=int(n_all), wall_time=time.perf_counter() - start,
                             plain=plain, holdout=holdout_trials, holdout_ann_accuracy=holdout_ann,
                             simulated_samples=search.simulated)
