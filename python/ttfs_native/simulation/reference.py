"""The numpy reference backend: SEMANTICS.md transcribed, step by step.

Readable and slow. It is the oracle the native backends are tested against,
so it does literally what the contract says: every step recomputes every
layer's input current ``L(a_in)`` and missing impulse ``L_abs(p_in)``.
"""
from __future__ import annotations

import numpy as np

from ..model import INPUT_NAME, Model, ops
from ..model.layers import LayerSpec
from ..model.residual import add_bias, add_groups
from .params import SimParams
from .philox import softmax_uniforms


class _Neurons:
    """State of one spiking layer for a batch (SEMANTICS.md 'One step')."""

    def __init__(self, n: int, spec: LayerSpec, v0: np.float32):
        shape = (n,) + spec.output_shape
        self.membrane = np.zeros(shape, np.float32)               # V
        self.threshold = np.full(shape, v0, np.float32)           # theta
        self.refrac_until = np.zeros(shape, np.float32)           # R
        self.last_spike = np.full(shape, -1.0, np.float32)        # S
        self.prospective = np.zeros(shape, np.float32)            # P
        # MaxPooling2D keeps a second spike time for its prospective map.
        self.last_prospective = np.full(shape, -1.0, np.float32)  # Sp


def _synaptic(spec: LayerSpec, x: np.ndarray, weights, bias_dt, absolute: bool) -> np.ndarray:
    """L(x) = W*x + b*dt, or L_abs(x) = |W|*x; average pooling for both.

    [choice] Convolution and matrix sums are taken in float64 and rounded to
    float32 once (SEMANTICS.md lets them be accumulated in any order): the
    float32 result is then the same whatever the summation order, also where
    terms cancel to almost zero, where `I > 0` decides the prospective flag.
    The bias is added in float32; average pooling sums in float32.
    """
    if spec.type == "AveragePooling2D":
        return ops.average_pool(x, spec)
    kernel = weights["kernel"].astype(np.float64)
    if absolute:
        return ops.weighted(spec, x.astype(np.float64), np.abs(kernel), None)
    return ops.weighted(spec, x.astype(np.float64), kernel, bias_dt)


def _group_sum(group, x: np.ndarray, absolute: bool) -> np.ndarray:
    """One synapse group of an Add (model/residual.py) applied to ``x`` in
    float64, not rounded: W*x (or |W|*x) of a weighted branch, scale*x of an
    identity group."""
    x64 = x.astype(np.float64)
    kernel = group.kernel.astype(np.float64)
    if absolute:
        kernel = np.abs(kernel)
    layer = group.layer
    if layer is None:
        return x64 * kernel
    if layer.type == "Dense":
        return x64 @ kernel
    if layer.type == "Conv2D":
        return ops.conv2d(x64, layer, kernel)
    return ops.depthwise_conv2d(x64, layer, kernel)


def _add_input(groups: list, signals: dict, bias_dt, absolute: bool) -> np.ndarray:
    """An Add's L (or L_abs): the float64 sum over its synapse groups, rounded to
    float32 once, plus the summed bias b*dt (SEMANTICS.md "Add")."""
    total = sum(_group_sum(g, signals[g.source][1 if absolute else 0], absolute) for g in groups)
    out = total.astype(np.float32)
    return out if absolute or bias_dt is None else out + bias_dt


def simulate(model: Model, x: np.ndarray, params: SimParams, fanouts: dict,
             sample_offset: int = 0) -> dict:
    """Run ``x`` (N, *input_shape) float32 through the SNN; returns the raw result arrays."""
    n, steps = x.shape[0], params.steps
    dt, v0 = params.dt32, np.float32(params.v_thresh)
    refrac, leak_step = np.float32(params.tau_refrac), params.leak_step32
    out_spec = model.output_layer
    softmax_out = out_spec.is_weighted and out_spec.activation == "softmax"
    samples = np.arange(sample_offset, sample_offset + n)

    state = {s.name: _Neurons(n, s, v0) for s in model.spiking_layers}
    bias_dt = {name: (w["bias"] * dt if w["bias"] is not None else None)
               for name, w in model.weights.items()}
    groups = {s.name: add_groups(model, s) for s in model.layers if s.is_add}
    for name in groups:
        bias = add_bias(model, model.layer(name))
        bias_dt[name] = None if bias is None else bias * dt
    first_spike = {s.name: np.zeros((n,) + s.output_shape, np.float32) for s in model.spiking_layers}
    spike_counts = {s.name: np.zeros(n, np.int64) for s in model.spiking_layers}
    counts = np.zeros((n, model.num_classes, steps), np.int32)
    synops = np.zeros((n, steps), np.float64)
    running = np.ones(n, bool)
    stop_step = np.full(n, steps, np.int32)
    x_dt = x * dt
    zeros_in = np.zeros_like(x)
    class_count = np.zeros((n, model.num_classes), np.int32)

    for t in range(1, steps + 1):
        tau = params.tau32(t)
        signals = {INPUT_NAME: (x_dt, zeros_in)}
        for spec in model.layers:
            if spec.is_branch:      # no neurons: its Add reads the branch's input
                continue
            ins = [signals[g.source] for g in groups[spec.name]] if spec.is_add \
                else [signals[name] for name in spec.inbound]
            if spec.is_structural:
                signals[spec.name] = (ops.structural(spec, [a for a, _ in ins]),
                                      ops.structural(spec, [p for _, p in ins]))
                continue
            a_in, p_in = ins[0]
            st = state[spec.name]
            if spec.type == "MaxPooling2D":
                m = ops.max_pool(a_in, spec)
                record = np.where((m > 0) ^ (st.last_spike > 0), tau, np.float32(0))
                st.last_spike = np.where(m != 0, tau, st.last_spike)
                mp = ops.max_pool(p_in, spec)
                st.last_prospective = np.where(mp != 0, tau, st.last_prospective)
                a_out = np.where(st.last_spike > 0, dt, np.float32(0))
                p_out = np.where(st.last_prospective > 0, dt, np.float32(0))
            else:
                weights = model.weights.get(spec.name)
                if spec.is_add:     # an Add's neurons integrate every group (SEMANTICS.md "Add")
                    missing = _add_input(groups[spec.name], signals, None, absolute=True)
                    has_input = np.any([np.any(a.reshape(n, -1) != 0, axis=1) for a, _ in ins], axis=0)
                    current = _add_input(groups[spec.name], signals, bias_dt[spec.name], absolute=False)
                else:
                    # 1. missing impulse of the prospective inputs
                    missing = _synaptic(spec, p_in, weights, None, absolute=True)
                    # 2. input current, only for samples whose input has arrived
                    has_input = np.any(a_in.reshape(n, -1) != 0, axis=1)
                    current = _synaptic(spec, a_in, weights, bias_dt.get(spec.name), absolute=False)
                current = np.where(has_input.reshape((n,) + (1,) * len(spec.output_shape)),
                                   current, np.float32(0))
                # 3.-4. refractory mask, integrate, leak
                masked = np.where(st.refrac_until > tau, np.float32(0), current)
                v_new = st.membrane + masked
                if params.leak:
                    v_new = np.where(v_new > 0, v_new - leak_step, v_new)
                if softmax_out and spec is out_spec:
                    # stochastic softmax output: no reset, no refractory period
                    u = softmax_uniforms(params.seed, spec.size, samples, t).reshape(v_new.shape)
                    spiked = u <= ops.softmax(v_new)
                    st.membrane = v_new
                    a_out = spiked.astype(np.float32)
                else:
                    spiked = v_new >= st.threshold                                   # 5.
                    st.membrane = np.where(spiked, np.float32(0), v_new)              # 6.
                    st.refrac_until = np.where(spiked, tau + refrac, st.refrac_until)  # 7.
                    st.last_spike = np.where(spiked, tau, st.last_spike)              # 11.
                    a_out = np.where(st.last_spike > 0, dt, np.float32(0))
                record = np.where(spiked, tau, np.float32(0))                        # 8.
                # 9. prospective flag with the new refractory end; 10. next threshold
                st.prospective = ((current > 0) & (st.refrac_until <= tau)).astype(np.float32)
                st.threshold = v0 + missing
                p_out = st.prospective
            signals[spec.name] = (a_out, p_out)

            fired = (record != 0) & running.reshape((n,) + (1,) * len(spec.output_shape))
            fs = first_spike[spec.name]
            first_spike[spec.name] = np.where(fired & (fs == 0), tau, fs)
            spike_counts[spec.name] += fired.reshape(n, -1).sum(axis=1)
            synops[:, t - 1] += (fired * fanouts[spec.name]).reshape(n, -1).sum(axis=1)

        out = signals[out_spec.name][0].reshape(n, -1) > 0
        class_count += (out & running[:, None]).astype(np.int32)
        counts[:, :, t - 1] = class_count
        if params.early_stop:
            decided = running & out.any(axis=1)
            stop_step[decided] = t
            running &= ~decided
            if not running.any():
                counts[:, :, t:] = class_count[:, :, None]
                break
    return {"counts": counts, "first_spike_times": first_spike, "spike_counts": spike_counts,
            "synops_t": synops, "stop_step": stop_step}


class ReferenceEngine:
    """:func:`simulate` behind the native engines' interface: ``run(inputs, results)``
    writes the rows of ``inputs`` (host memory only) into ``results`` (the
    compiled core's Input and Results, or anything with their attributes)."""

    def __init__(self, model: Model, params: SimParams, fanouts: dict, record_spike_times: bool = True):
        self.model, self.params, self.fanouts = model, params, fanouts
        self.record_spike_times = record_spike_times

    def run(self, inputs, results) -> None:
        lo, hi, x = host_rows(inputs, self.model)
        # draws keyed by the sample's index in the whole input (stream_offset: of a part run alone)
        raw = simulate(self.model, x, self.params, self.fanouts,
                       sample_offset=lo + int(getattr(inputs, "stream_offset", 0)))
        write_rows(results, raw, lo, hi, self.model.spiking_layers)


def host_rows(inputs, model: Model) -> tuple:
    """(lo, hi, x): the result rows of an engine Input and its samples as
    (samples, *input_shape); the numpy engines read host memory only."""
    if inputs.on_device or inputs.array is None:
        raise ValueError("the reference backend takes input in host memory")
    lo = int(inputs.sample_offset)
    hi = lo + int(inputs.samples)
    return lo, hi, np.asarray(inputs.array).reshape((hi - lo,) + tuple(model.input_shape))


def write_rows(results, raw: dict, lo: int, hi: int, spiking: list) -> None:
    """A numpy engine's raw result for rows lo..hi into the engine Results."""
    results.counts[lo:hi] = raw["counts"]
    results.synops[lo:hi] = raw["synops_t"]
    results.stop_step[lo:hi] = raw["stop_step"]
    first = list(results.first_spike)
    if first and len(first) != len(spiking):
        raise ValueError("Results.first_spike: one array per spiking layer, or none")
    for j, s in enumerate(spiking):
        if first:
            first[j][lo:hi] = raw["first_spike_times"][s.name].reshape(hi - lo, -1)
        results.spike_counts[lo:hi, j] = raw["spike_counts"][s.name]
