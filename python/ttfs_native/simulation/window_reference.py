"""The numpy reference of the ttfs-window coding: docs/WINDOW_SEMANTICS.md
transcribed step by step, vectorised over the batch.

Readable and slow; the oracle for the native backends. Spike times are
integer steps (0 = has not fired), membranes and slopes float32; the
constants come from window_plan.py.
"""
from __future__ import annotations

import numpy as np

from ..model import INPUT_NAME, Model, ops
from ..model.layers import LayerSpec, concat_axis
from .params import SimParams
from .reference import host_rows, write_rows
from .window_plan import WindowPlan

NOT_FIRED = 0  # steps count from 1


def encode_input(x: np.ndarray, plan: WindowPlan) -> tuple:
    """(ON spike steps, OFF spike steps or None) of the input neurons (WINDOW_SEMANTICS.md "Input").

    Level k = clip(floor(x * (S_0 / X_0) + 1/2), 0, S_0) in float64 (no fused
    multiply-add); the neuron of level k fires at step R_0 - k, level 0 only
    with zero_spikes. Signed input: the OFF neuron encodes -x the same way.
    """
    gain = np.float64(plan.input_steps) / np.float64(plan.input_range)
    ref = plan.ref[INPUT_NAME]

    def steps_of(values):
        level = np.clip(np.floor(values.astype(np.float64) * gain + 0.5), 0, plan.input_steps).astype(np.int32)
        fires = (level > 0) | plan.zero_spikes
        return np.where(fires, ref - level, NOT_FIRED).astype(np.int32)

    if not plan.signed_input:
        return steps_of(x), None
    return steps_of(x), steps_of(-x)


def _pool_sum(x: np.ndarray, spec: LayerSpec) -> np.ndarray:
    """Sum over each pooling window (padding cells count 0), in x's dtype."""
    c = spec.config
    total = np.zeros((x.shape[0],) + spec.output_shape, x.dtype)
    for _, _, view in ops._windows(x, spec, c["pool_size"], c["strides"], (1, 1)):
        total += view
    return total


def _ramp_increment(spec: LayerSpec, arrived: np.ndarray, plan: WindowPlan) -> np.ndarray:
    """D(t): the sum of the ramp weights of the inputs arriving this step, taken
    in float64 and rounded to float32 once. ``arrived`` is +1 (ON), -1 (OFF) or 0."""
    if spec.type == "AveragePooling2D":
        return (_pool_sum(arrived, spec) * plan.avg_weight[spec.name].astype(np.float64)).astype(np.float32)
    return ops.weighted(spec, arrived, plan.kernel[spec.name].astype(np.float64), None)


def _arrivals(on: np.ndarray, off, step: int):
    """+1 where an ON spike of step ``step`` is, -1 for an OFF spike, else 0
    (float64); None when nothing fired at that step."""
    if step < 1:
        return None
    arrived = (on == step).astype(np.float64)
    if off is not None:
        arrived -= (off == step)
    return arrived if arrived.any() else None


def _add_increment(spec: LayerSpec, t: int, plan: WindowPlan, fired_at: dict, fired_off: dict):
    """D(t) of a residual Add: every synapse group's ramps of the spikes of its
    source that arrive now (emitted ``delay`` steps earlier), all in one float64
    sum rounded to float32 once; None when nothing arrives."""
    total = None
    for (source, layer, ramp), delay in zip(plan.groups[spec.name], plan.delays[spec.name]):
        arrived = _arrivals(fired_at[source], fired_off.get(source), t - delay)
        if arrived is None:
            continue
        ramp = ramp.astype(np.float64)
        part = arrived * ramp if layer is None else ops.linear(layer, arrived, ramp)
        total = part if total is None else total + part
    return None if total is None else total.astype(np.float32)


def _structural(spec: LayerSpec, arrays: list, plan: WindowPlan) -> np.ndarray:
    """Flatten/Reshape/ZeroPadding2D/Concatenate of spike-step arrays; padding cells
    never fire; a Concatenate delays each inbound's spikes to the latest window."""
    if spec.type == "Concatenate":
        delayed = [np.where(a != NOT_FIRED, a + d, NOT_FIRED).astype(np.int32)
                   for a, d in zip(arrays, plan.delays[spec.name])]
        return np.concatenate(delayed, axis=concat_axis(spec) + 1)
    return ops.structural(spec, arrays)


def simulate(model: Model, x: np.ndarray, params: SimParams, fanouts: dict, plan: WindowPlan) -> dict:
    """Run ``x`` (N, *input_shape) float32 through the window-coded SNN; returns
    the raw result arrays of reference.simulate (plus "output_membrane")."""
    n, steps = x.shape[0], params.steps
    out_spec = model.output_layer
    if steps < plan.read_step:
        raise ValueError(f"coding 'ttfs-window': the output is read at step {plan.read_step}, but the "
                         f"simulation has only {steps} steps; use duration >= {plan.read_step} * dt")
    spiking = model.spiking_layers
    on, off = encode_input(x, plan)
    # spike steps of every node: ON neurons, and OFF neurons of nodes carrying the signed input
    fired_at = {INPUT_NAME: on}
    fired_off = {INPUT_NAME: off}
    membrane, slope = {}, {}
    for spec in spiking:
        fired_at[spec.name] = np.full((n,) + spec.output_shape, NOT_FIRED, np.int32)
        if spec.type != "MaxPooling2D":
            membrane[spec.name] = np.zeros((n,) + spec.output_shape, np.float32)   # V
            slope[spec.name] = np.zeros((n,) + spec.output_shape, np.float32)      # I
    end = {s.name: plan.ref.get(s.name, plan.read_step) for s in spiking}
    synops = np.zeros((n, steps), np.float64)
    output_membrane = None

    def count_synops(name, spike_steps, t):
        if spike_steps is not None:
            synops[:, t - 1] += ((spike_steps == t) * fanouts[name]).reshape(n, -1).sum(axis=1)

    for t in range(1, min(steps, plan.read_step) + 1):
        count_synops(INPUT_NAME, on, t)
        count_synops(INPUT_NAME, off, t)
        for spec in model.layers:
            src = spec.inbound
            if spec.is_branch:
                continue                       # an Add's synapse group: the Add reads its input
            if spec.is_structural:
                fired_at[spec.name] = _structural(spec, [fired_at[s] for s in src], plan)
                offs = [fired_off.get(s) for s in src]
                fired_off[spec.name] = None if all(o is None for o in offs) else _structural(
                    spec, [o if o is not None else np.zeros_like(fired_at[s]) for o, s in zip(offs, src)], plan)
                continue
            if t > end[spec.name]:
                continue                       # its window is over: nothing changes any more
            a_on, a_off = (None, None) if spec.is_add else (fired_at[src[0]], fired_off.get(src[0]))
            if spec.type == "MaxPooling2D":
                # the earliest input spike of each pooling window is the output spike
                first = ops.max_pool((a_on == t).astype(np.float32), spec) > 0
                new = first & (fired_at[spec.name] == NOT_FIRED)
                fired_at[spec.name][new] = t
                count_synops(spec.name, fired_at[spec.name], t)
                continue
            v, i = membrane[spec.name], slope[spec.name]
            v += i                                                     # 1. integrate the slope of step t-1
            windowed = spec is not out_spec
            if windowed and t >= plan.start[spec.name]:
                i[...] = np.float32(1)                                 # 2. in the window: slope exactly 1
            elif spec.is_add:                                          # 2. ramps of every group's arrivals
                d = _add_increment(spec, t, plan, fired_at, fired_off)
                if d is not None:
                    i += d
            else:
                arrived = _arrivals(a_on, a_off, t)                    # 2. ramps of this step's input spikes
                if arrived is not None:
                    i += _ramp_increment(spec, arrived, plan)
            if not windowed:
                if t == plan.read_step:                                # the output is read, not fired
                    output_membrane = v + plan.out_bias
                continue
            if t >= plan.start[spec.name]:                             # 3. fire (threshold +inf before)
                at = fired_at[spec.name]
                fire = (at == NOT_FIRED) & (v >= plan.theta[spec.name])
                if plan.zero_spikes and t == plan.ref[spec.name]:
                    fire |= at == NOT_FIRED                            # forced spike: level 0
                at[fire] = t
                count_synops(spec.name, at, t)

    return _collect(model, params, plan, fired_at, output_membrane, synops, spiking)


def _collect(model, params, plan, fired_at, output_membrane, synops, spiking) -> dict:
    n, steps, classes = synops.shape[0], params.steps, model.num_classes
    prediction = output_membrane.reshape(n, -1).argmax(axis=1)    # lowest index on exact ties
    counts = np.zeros((n, classes, steps), np.int32)
    counts[np.arange(n), prediction, plan.read_step - 1:] = 1      # the decision, from the read step on
    first_spike, spike_counts = {}, {}
    for spec in spiking:
        at = fired_at[spec.name]
        # time of the spike, tau = f32(t) * f32(dt); 0 where the neuron did not fire
        first_spike[spec.name] = np.where(at != NOT_FIRED, at.astype(np.float32) * params.dt32, np.float32(0))
        spike_counts[spec.name] = (at != NOT_FIRED).reshape(n, -1).sum(axis=1).astype(np.int64)
    stop = plan.read_step if params.early_stop else steps
    return {"counts": counts, "first_spike_times": first_spike, "spike_counts": spike_counts,
            "synops_t": synops, "stop_step": np.full(n, stop, np.int32),
            "output_membrane": output_membrane.astype(np.float32)}


class WindowReferenceEngine:
    """:func:`simulate` behind the engines' interface (reference.ReferenceEngine's):
    ``run(inputs, results)`` writes the rows of ``inputs`` into ``results``."""

    def __init__(self, model: Model, params: SimParams, fanouts: dict, plan: WindowPlan):
        self.model, self.params, self.fanouts, self.plan = model, params, fanouts, plan

    def run(self, inputs, results) -> None:
        lo, hi, x = host_rows(inputs, self.model)
        raw = simulate(self.model, x, self.params, self.fanouts, self.plan)
        write_rows(results, raw, lo, hi, self.model.spiking_layers)
        results.output_membrane[lo:hi] = raw["output_membrane"].reshape(hi - lo, -1)
