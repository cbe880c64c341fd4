"""Conversion for the ttfs-window coding (docs/WINDOW_SEMANTICS.md, "Conversion").

    model = convert_window(ann, x_calibration, max_steps=64)
    tn.Simulator(model, coding="ttfs-window", duration=model.simulation["duration"],
                 backend="reference").run(x_test, y_test)

Steps: fold average pooling into the next weighted layer where that is exact
(fewer windows); normalise every weighted layer so that the ``percentile``-th
percentile of its positive activations on the calibration data is 1
(normalise.py); the input's range X_0 is the same percentile of |x|; split the
step budget between the windows by measuring, with the quantised-ANN
estimator below, how much each window's quantisation moves the output;
record the settings in ``model.simulation``.

The estimator (:func:`quantised_forward`) is the ANN with every windowed
layer's activation rounded to its window's levels, in float64: what the SNN
computes exactly, up to float32 rounding (the SNN's levels equal it except
where a membrane lies within float32 rounding of a half level).
:func:`error_bound` is the derived bound on |SNN output - ANN output|.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..importers import import_model
from ..model import INPUT_NAME, Model, check_input, ops
from ..model.ann import ann_logits
from ..model.transforms import ann_view, fold_average_pooling
from ..model.window_settings import WINDOW_CODING, check_window_settings, total_steps, windowed_layers
from ..simulation.window_plan import WindowPlan, build_window_plan
from .normalise import ActivationStats, check_percentile, normalise

DEFAULT_PERCENTILE = 99.99
U32 = 2.0 ** -24         # float32 unit roundoff


# ------------------------------------------------------------- estimator
def _linear(spec, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """kernel * x for Dense/Conv2D/DepthwiseConv2D in float64 (no bias)."""
    return ops.linear(spec, x, kernel.astype(np.float64))


def _groups_linear(spec, values: dict, plan: WindowPlan, absolute: bool = False) -> np.ndarray:
    """An Add's sum over its synapse groups of ramp weights times the groups'
    source values (float64; with ``absolute``, |ramp weights|)."""
    total = 0.0
    for source, layer, ramp in plan.groups[spec.name]:
        ramp = np.abs(ramp) if absolute else ramp
        part = values[source] * ramp.astype(np.float64) if layer is None else _linear(layer, values[source], ramp)
        total = total + part
    return total


def _pool_reduce(x: np.ndarray, spec, reduce) -> np.ndarray:
    c = spec.config
    out = None
    pad = -np.inf if reduce is np.maximum else 0.0
    for _, _, view in ops._windows(x, spec, c["pool_size"], c["strides"], (1, 1), pad_value=pad):
        out = view.copy() if out is None else reduce(out, view)
    return out


def _input_levels(x: np.ndarray, plan: WindowPlan, quantise: bool) -> np.ndarray:
    """Input in levels (ON minus OFF); exact: x / unit, as the ANN sees it."""
    lv = x.astype(np.float64) * (np.float64(plan.input_steps) / np.float64(plan.input_range))
    if not quantise:
        return lv
    on = np.clip(np.floor(lv + 0.5), 0, plan.input_steps)
    if not plan.signed_input:
        return on
    return on - np.clip(np.floor(-lv + 0.5), 0, plan.input_steps)


def quantised_forward(model: Model, x, plan: WindowPlan, quantise=None, return_all: bool = False):
    """The ANN in level units with the nodes in ``quantise`` (default: the input
    and every windowed layer) rounded as the SNN rounds them: level
    clip(floor(u - theta + S), 0, S) = clip(floor(u + beta + 1/2), 0, S).
    Unquantised nodes take the exact ReLU activation in levels.
    Returns the output logits (N, classes) float64, or with ``return_all`` a
    dict node -> levels (the output's entry holds the logits)."""
    x = check_input(model, x)
    if quantise is None:
        quantise = [INPUT_NAME] + windowed_layers(model)
    quantise = set(quantise)
    vals = {INPUT_NAME: _input_levels(x, plan, INPUT_NAME in quantise)}
    out = model.output_layer
    for spec in model.layers:
        if spec.is_branch:
            continue            # its Add reads the branch's input through the group's ramps
        ins = [] if spec.is_add else [vals[n] for n in spec.inbound]   # (an Add reads its groups' sources)
        if spec.is_structural:
            vals[spec.name] = ops.structural(spec, ins)
            continue
        if spec.type == "MaxPooling2D":
            vals[spec.name] = _pool_reduce(ins[0], spec, np.maximum)
            continue
        if spec is out:
            vals[spec.name] = _linear(spec, ins[0], plan.kernel[spec.name]) + plan.out_bias.astype(np.float64)
            break
        steps = plan.steps[spec.name]
        if spec.type == "AveragePooling2D":
            u = _pool_reduce(ins[0], spec, np.add) * plan.avg_weight[spec.name].astype(np.float64)
        elif spec.is_add:
            u = _groups_linear(spec, vals, plan)
        else:
            u = _linear(spec, ins[0], plan.kernel[spec.name])
        u = u + (steps - 0.5 - plan.theta[spec.name].astype(np.float64))   # + beta (levels)
        vals[spec.name] = np.clip(np.floor(u + 0.5), 0, steps) if spec.name in quantise else np.maximum(u, 0)
    logits = vals[out.name].reshape(len(x), -1)
    return vals if return_all else logits


def error_bound(model: Model, x, plan: WindowPlan) -> np.ndarray:
    """Per sample and class, a bound on |SNN output membrane - ANN output| (output units).

    E(input) = 1/2 + saturation; a windowed layer: E_i = 1/2 + eps_i + sum_j |w_ij| E_j
    + max(0, a_i - S) (a_i the exact activation in levels); max pooling: the
    largest E of the window; structural layers move E as they move values;
    output: sum_j |w_oj| E_j + eps_o. eps is the float32 term of WINDOW_SEMANTICS.md.
    """
    x = check_input(model, x)
    exact = quantised_forward(model, x, plan, quantise=(), return_all=True)
    lv = exact[INPUT_NAME]
    s0 = plan.input_steps
    sat = np.maximum(np.abs(lv) - s0, 0) if plan.signed_input else np.maximum(lv - s0, 0) + np.maximum(-lv, 0)
    err = {INPUT_NAME: 0.5 + sat}
    out = model.output_layer
    for spec in model.layers:
        if spec.is_branch:
            continue
        ins = [] if spec.is_add else [err[n] for n in spec.inbound]   # (an Add reads its groups' sources)
        if spec.is_structural:
            err[spec.name] = ops.structural(spec, ins)
            continue
        if spec.type == "MaxPooling2D":
            err[spec.name] = _pool_reduce(ins[0], spec, np.maximum)
            continue
        if spec.type == "AveragePooling2D":
            weight = np.abs(plan.avg_weight[spec.name].astype(np.float64))
            carried = _pool_reduce(ins[0], spec, np.add) * weight
            fan_weight = _pool_reduce(np.ones((1,) + spec.input_shape), spec, np.add) * weight
        elif spec.is_add:
            carried = _groups_linear(spec, err, plan, absolute=True)
            ones = {src: np.ones((1,) + model.shape_of(src)) for src, _, _ in plan.groups[spec.name]}
            fan_weight = _groups_linear(spec, ones, plan, absolute=True)
        else:
            kernel = np.abs(plan.kernel[spec.name].astype(np.float64))
            carried = _linear(spec, ins[0], kernel)
            fan_weight = _linear(spec, np.ones((1,) + spec.input_shape), kernel)   # A_i = sum_j |w_ij|
        if spec.is_add:     # the group whose (delayed) spikes can come first ramps longest
            ramp_steps = max(plan.start[spec.name] - plan.first[src] - d + 1
                             for (src, _, _), d in zip(plan.groups[spec.name], plan.delays[spec.name]))
        else:
            ramp_steps = plan.start[spec.name] - plan.first[spec.inbound[0]] + 1
        if spec is out:
            eps = 4 * U32 * (ramp_steps ** 2 * fan_weight + np.abs(plan.out_bias) + np.abs(exact[spec.name]))
            err[spec.name] = carried + eps
            break
        steps = plan.steps[spec.name]
        theta = np.abs(plan.theta[spec.name].astype(np.float64))
        eps = 4 * U32 * (ramp_steps ** 2 * fan_weight + steps * (ramp_steps * fan_weight + steps) + theta + 1)
        err[spec.name] = 0.5 + eps + carried + np.maximum(exact[spec.name] - steps, 0)
    return err[out.name].reshape(len(x), -1)


# ------------------------------------------------------------- settings and split
def _check_steps(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def window_settings(model: Model, steps: dict, input_steps: int, input_range: float,
                    signed_input: bool = False, zero_spikes: bool = True) -> dict:
    """A validated "window" object for ``model``."""
    return check_window_settings({"input_steps": int(input_steps), "input_range": float(input_range),
                                  "signed_input": bool(signed_input), "zero_spikes": bool(zero_spikes),
                                  "steps": {k: int(v) for k, v in steps.items()}}, model)


def _split(weights: dict, budget: int) -> dict:
    """Integers >= 1 summing to ``budget``, proportional to ``weights`` (largest remainder)."""
    names = list(weights)
    w = np.array([max(weights[n], 1e-30) for n in names])
    share = np.maximum(w / w.sum() * budget, 1.0)
    share = share / share.sum() * budget
    base = np.maximum(np.floor(share).astype(int), 1)
    for i in np.argsort(-(share - base)):
        if base.sum() >= budget:
            break
        base[i] += 1
    while base.sum() > budget:          # the minimum of 1 pushed it over
        base[np.argmax(base)] -= 1
    return dict(zip(names, base.tolist()))


def measure_sensitivity(model: Model, x, window: dict, probes=None) -> dict:
    """c_n = max over the probe resolutions S of S^2 * (mean squared output error,
    output units, when only node n is quantised to S levels), for the input and
    every windowed layer. (Quantisation noise power falls as 1/S^2; several
    probes guard against a resolution that happens to fit the data, such as
    16 levels for inputs that are multiples of 1/16. A node that all the
    default probes quantise without error, e.g. those inputs at 512, 1024 and
    2048 levels, is probed again at odd resolutions, which no power-of-two
    grid fits: else it would get a single step.)"""
    default = probes is None
    if default:
        share = max(2, (sum(window["steps"].values()) + window["input_steps"]) // (len(window["steps"]) + 1))
        probes = sorted({max(2, share // 2), share, 2 * share})
    nodes = [INPUT_NAME] + list(window["steps"])
    out = dict.fromkeys(nodes, 0.0)
    _probe(model, x, window, probes, nodes, out)
    exact_fit = [n for n in nodes if out[n] == 0]
    if default and exact_fit:
        _probe(model, x, window, sorted({max(3, p | 1) for p in probes}), exact_fit, out)
    return out


def _probe(model: Model, x, window: dict, probes, nodes: list, out: dict) -> None:
    """out[n] = max(out[n], S^2 * MSE) over the resolutions S in ``probes`` (measure_sensitivity)."""
    for steps in probes:
        plan = build_window_plan(model, dict(window, input_steps=steps, steps={n: steps for n in window["steps"]}))
        exact = quantised_forward(model, x, plan, quantise=())
        for node in nodes:
            mse = float(np.mean((quantised_forward(model, x, plan, quantise=[node]) - exact) ** 2))
            out[node] = max(out[node], mse * steps ** 2)


def split_steps(model: Model, x, window: dict, budget: int, sensitivity: dict | None = None) -> dict:
    """Window steps (input first) summing to ``budget``: S_n proportional to c_n^(1/3),
    which minimises sum_n c_n / S_n^2 (the output's quantisation noise power)
    for a fixed sum of steps; c_n from :func:`measure_sensitivity`."""
    sensitivity = sensitivity or measure_sensitivity(model, x, window)
    return _split({n: c ** (1 / 3) for n, c in sensitivity.items()}, budget)


# ------------------------------------------------------------- search
SEARCH_SCALES = (1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1)   # local range candidates
SEARCH_MOVES = (0.8, 1.25)                                                # range moves per round
SEARCH_PAIRS = 4                                                          # step moves tried per round


def _round_to_levels(z: np.ndarray, scale: float, steps: int) -> np.ndarray:
    """z rounded to the window's levels, in z's units: the range ``scale`` is level ``steps``."""
    return (scale / steps) * np.clip(np.floor(z * (steps / scale) + 0.5), 0, steps)


class _SearchEstimator:
    """The quantised ANN in the normalised model's own units (1 = the percentile),
    each window's range ``scale_n`` and steps free: node n's value is
    ``_round_to_levels(z_n, scale_n, S_n)``: the estimator above with the
    normalisation moved by ``scale_n``, in float32 (it differs from the SNN at
    float ties only, which is all a search needs). :meth:`run` re-evaluates
    only what a change reaches, from an earlier run's state (values and the
    windowed nodes' pre-activations)."""

    def __init__(self, model: Model, x: np.ndarray, window: dict):
        self.model, self.x = model, x.astype(np.float32)
        self.signed, self.input_range = bool(window["signed_input"]), float(window["input_range"])
        self.nodes = [INPUT_NAME] + windowed_layers(model)

    def _input(self, scale: float, steps: int) -> np.ndarray:
        """The input's levels in input units; ``scale`` times X_0 is the top level."""
        top = np.float32(scale * self.input_range)
        on = _round_to_levels(self.x, top, steps)
        return on - _round_to_levels(-self.x, top, steps) if self.signed else on

    def run(self, scales: dict, steps: dict, base: dict | None = None, changed=()) -> dict:
        state, dirty = {}, set()
        if base is None or INPUT_NAME in changed:
            state[INPUT_NAME] = self._input(scales[INPUT_NAME], steps[INPUT_NAME])
            dirty.add(INPUT_NAME)
        else:
            state[INPUT_NAME] = base[INPUT_NAME]
        out = self.model.output_layer
        for spec in self.model.layers:
            name = spec.name
            fresh = base is None or bool(dirty.intersection(spec.inbound))
            if not fresh and name not in changed:
                state[name] = base[name]
                if name in steps:
                    state[name, "z"] = base[name, "z"]
                continue
            dirty.add(name)
            ins = [state[n] for n in spec.inbound]
            if name in steps:
                z = ops.apply_layer(spec, ins, self.model.weights.get(name), activation=False) \
                    if fresh else base[name, "z"]
                state[name, "z"] = z
                state[name] = _round_to_levels(z, np.float32(scales[name]), steps[name])
            else:
                state[name] = ops.apply_layer(spec, ins, self.model.weights.get(name), activation=spec is not out)
        return state


def search_windows(model: Model, x, window: dict, rounds: int = 3, log=None) -> tuple:
    """Window ranges and steps chosen by agreement with the ANN on ``x``.

    ``model``: normalised for the coding (convert_window); ``window``: its
    settings with the measured split. Returns ``(range_scales, steps, record)``:
    a factor per node (the input's multiplies ``input_range``, a layer's its
    normalisation scale) and the steps per node (input first; same total).

    The score of a setting: (calibration samples whose quantised prediction
    equals the ANN's, then minus the mean squared error of the logits over
    their mean square).

    1. Local ranges: for each node, the factor in :data:`SEARCH_SCALES` whose
       rounding to the node's levels has the least mean squared error on its
       ANN activations (a heavy tail is clipped where coarse levels lose more
       on the typical activations than clipping loses on the tail); kept if
       it scores no worse than all factors 1.
    2. Up to ``rounds`` rounds of a coordinate search: every node's factor
       times 0.8 and 1.25 (kept when the score rises); then every node's
       window one step shorter and one step longer, each alone, and the
       moves of one step from window a to window b in the order of the sum
       of those two changes of the score, the best :data:`SEARCH_PAIRS`
       tried and the first that raises the score kept.
    Average-pooling windows keep factor 1 (their range is their input's).
    The budget, and hence the latency, is unchanged.
    """
    x = check_input(model, x, "calibration input", allow_empty=False)
    steps = {INPUT_NAME: int(window["input_steps"]), **{n: int(v) for n, v in window["steps"].items()}}
    est = _SearchEstimator(model, x, window)
    nodes = est.nodes
    # an average pooling window's range is its input's (WindowPlan): it moves steps only
    ranged = [n for n in nodes if n == INPUT_NAME or model.layer(n).type != "AveragePooling2D"]
    ann = model.ann_forward(x, return_all=True)
    ref = ann_logits(model, x, ann).astype(np.float64)
    target, norm = ref.argmax(1), max(float(np.mean(ref ** 2)), 1e-30)

    def score(state):
        logits = state[model.output_layer.name].reshape(len(x), -1).astype(np.float64)
        return int(np.sum(logits.argmax(1) == target)), -float(np.mean((logits - ref) ** 2)) / norm

    ones = dict.fromkeys(nodes, 1.0)
    base = est.run(ones, steps)
    start = score(base)
    local = dict(ones)
    for n in ranged:
        a = np.abs(x) / est.input_range if n == INPUT_NAME else ann[n]     # in units of the range
        a = a[a > 0].astype(np.float64)
        if a.size:
            errors = [np.mean((_round_to_levels(a, s, steps[n]) - a) ** 2) for s in SEARCH_SCALES]
            local[n] = SEARCH_SCALES[int(np.argmin(errors))]
    trial = est.run(local, steps)
    scales, best = ones, start
    if (s := score(trial)) >= start:
        scales, base, best = local, trial, s
    if log:
        log(f"window search: {start[0]}/{len(x)} predictions as the ANN's; local ranges {best[0]}/{len(x)}")
    for r in range(rounds):
        improved = False
        for n in ranged:
            for f in SEARCH_MOVES:
                trial_scales = dict(scales, **{n: scales[n] * f})
                state = est.run(trial_scales, steps, base, {n})
                if (s := score(state)) > best:
                    scales, base, best, improved = trial_scales, state, s, True
        gain = lambda s: s[0] - best[0] + s[1] - best[1]   # noqa: E731  (a move's score change, as one number)
        shorter = {n: gain(score(est.run(scales, dict(steps, **{n: steps[n] - 1}), base, {n})))
                   for n in nodes if steps[n] > 1}
        longer = {n: gain(score(est.run(scales, dict(steps, **{n: steps[n] + 1}), base, {n}))) for n in nodes}
        pairs = sorted(((shorter[a] + longer[b], a, b) for a in shorter for b in nodes if a != b), reverse=True)
        for _, a, b in pairs[:SEARCH_PAIRS]:
            trial_steps = dict(steps, **{a: steps[a] - 1, b: steps[b] + 1})
            state = est.run(scales, trial_steps, base, {a, b})
            if (s := score(state)) > best:
                steps, base, best, improved = trial_steps, state, s, True
                break
        if log:
            log(f"window search: round {r + 1}: {best[0]}/{len(x)}")
        if not improved:
            break
    record = {"samples": int(len(x)), "agree_before": start[0] / len(x), "agree_after": best[0] / len(x),
              "range_scales": {n: float(v) for n, v in scales.items()}}
    return scales, steps, record


# ------------------------------------------------------------- conversion
def convert_window(model, x_calibration, max_steps: int = 64, percentile: float = DEFAULT_PERCENTILE,
                   fold_pooling: bool = True, split: str = "measured", zero_spikes: bool = True,
                   signed_input: bool | None = None, batch_size: int = 256, search: bool = True,
                   search_samples: int | None = None, search_rounds: int = 3, log=None) -> Model:
    """A Model set up for coding "ttfs-window" with at most ``max_steps`` steps in all.

    ``model``: a Model or an ANN file (.onnx, .h5, .keras). ``x_calibration``:
    channels-last samples (e.g. part of the training set). ``split``:
    "measured" (more steps where the quantisation moves the output most) or
    "uniform". ``signed_input``: default True when the calibration data have
    negative values. ``search``: then choose every window's range and move
    steps between windows by agreement with the ANN on the first
    ``search_samples`` calibration samples (default: all; the search's time
    grows with them), up to ``search_rounds`` rounds (:func:`search_windows`;
    ``log`` gets its progress lines). The budget
    counts the input's window and every windowed layer as if they were in a
    chain (for branching nets the latency, the longest path, is then at most
    ``max_steps``).
    """
    if not isinstance(model, Model):
        model = import_model(model)
    percentile = check_percentile(percentile)
    if split not in ("measured", "uniform"):
        raise ValueError(f"split must be 'measured' or 'uniform', got {split!r}")
    x = check_input(model, x_calibration, "calibration input", allow_empty=False)
    search_samples = len(x) if search_samples is None else _check_steps("search_samples", search_samples, 1)
    search_rounds = _check_steps("search_rounds", search_rounds, 0)
    if fold_pooling:
        model = fold_average_pooling(model)
    ann = ann_view(model)
    stats = ActivationStats(ann, x, batch_size)
    model = normalise(ann, x, percentile=percentile, stats=stats)
    layers = windowed_layers(model)
    max_steps = _check_steps("max_steps", max_steps, 2 * (len(layers) + 1) + 1)
    magnitude = np.abs(x[x != 0]).astype(np.float64)
    if magnitude.size == 0:
        raise ValueError("the calibration input is all zeros")
    input_range = float(np.percentile(magnitude, percentile))
    if signed_input is None:
        signed_input = bool(np.any(x < 0))
    budget = max_steps - 1

    def settings(steps: dict) -> dict:    # steps of the input and every layer; the current model and range
        return window_settings(model, {n: steps[n] for n in layers}, steps[INPUT_NAME], input_range,
                               signed_input, zero_spikes)

    uniform = {n: budget // (len(layers) + 1) for n in [INPUT_NAME] + layers}
    window = settings(uniform)
    build_window_plan(model, window)     # what the coding cannot map is refused before any search
    sensitivity = None
    if split == "measured":
        sensitivity = measure_sensitivity(model, x, window)
        chosen = split_steps(model, x, window, budget, sensitivity)
    else:
        chosen = _split({n: 1.0 for n in uniform}, budget)
    window = settings(chosen)
    searched = None
    if search:
        scales, chosen, searched = search_windows(model, x[:search_samples], window, search_rounds, log)
        moved = {n: scales[n] for n in layers if scales[n] != 1.0}
        if moved:
            model = normalise(ann, x, percentile=percentile, stats=stats, range_scales=moved)
        input_range *= scales[INPUT_NAME]
        window = settings(chosen)
    metadata = dict(model.metadata)
    metadata["window_conversion"] = {
        "percentile": percentile, "max_steps": max_steps, "split": split, "fold_pooling": fold_pooling,
        "calibration_samples": int(x.shape[0]), "input_range": input_range,
        "sensitivity": sensitivity, "search": searched}
    simulation = {"coding": WINDOW_CODING, "duration": float(total_steps(window, model)), "dt": 1.0,
                  "window": window}
    return Model(model.input_shape, [s.to_json() for s in model.layers], model.weights, metadata, simulation)
