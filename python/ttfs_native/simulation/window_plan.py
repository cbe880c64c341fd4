"""The constants of the ttfs-window coding, computed once on the host
(docs/WINDOW_SEMANTICS.md, "Timeline" and "Constants").

Every backend takes these arrays as they are (float32 ramp weights and
thresholds, integer steps), so the only arithmetic a backend does is the
per-step neuron update, identical everywhere. The constants are computed in
float64 and rounded to float32 once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model import INPUT_NAME, Model, ModelError, ops
from ..model.layers import concat_axis
from ..model.residual import add_bias, add_groups
from ..model.window_settings import check_window_settings


@dataclass
class WindowPlan:
    """Timeline and constants of one model under one window setting.

    ref[node]: the node's reference step R (its level-0 spikes happen at R; a
    spike at step s encodes level R - s); first[node]: the earliest step it can
    fire (its top level). start[layer]: the first step of a
    windowed layer's window (the reference step of its input). read_step: the
    step at which the output membrane is read (the output's input's R).
    delays[concat or add]: the delay (steps) added to the spikes of each inbound
    (an Add's: of each synapse group's source).
    kernel[layer]: float32 ramp weights of weighted layers (Keras layout);
    groups[add]: the Add's synapse groups, (source, branch layer or None,
    float32 ramp weights: the branch's kernel layout, or one per channel for
    an identity group), in inbound order;
    avg_weight[layer]: float32 ramp weight per output neuron of average pooling;
    theta[layer]: float32 thresholds (one per channel); out_bias: float32 bias
    added to the output membrane when it is read.
    """

    input_steps: int
    input_range: float
    signed_input: bool
    zero_spikes: bool
    steps: dict
    ref: dict = field(default_factory=dict)
    start: dict = field(default_factory=dict)
    delays: dict = field(default_factory=dict)
    kernel: dict = field(default_factory=dict)
    avg_weight: dict = field(default_factory=dict)
    theta: dict = field(default_factory=dict)
    out_bias: np.ndarray | None = None
    read_step: int = 0
    level_unit: dict = field(default_factory=dict)
    first: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)


def _per_channel(name: str, unit: np.ndarray) -> np.ndarray:
    """The level unit of each input channel; it must not vary over positions.
    (Zero marks a padding cell, which never fires and has no unit.)"""
    flat = unit.reshape(-1, unit.shape[-1])
    first = flat.max(axis=0)
    if not np.all((flat == first) | (flat == 0)):
        raise ModelError(f"layer '{name}': its input mixes windows of different resolution along a "
                         "non-channel axis (a spatial Concatenate of branches with different window "
                         "steps); give those branches equal steps or concatenate along channels")
    return first


def _kernel_factor(spec, per_channel: np.ndarray) -> np.ndarray:
    """Broadcast a per-input-channel factor to the kernel's layout."""
    if spec.type == "Dense":
        return per_channel[:, None]
    return per_channel[None, None, :, None]  # Conv2D and DepthwiseConv2D (kh, kw, in, out/mult)


def _ramp_kernel(kernel: np.ndarray, spec, factor: np.ndarray) -> np.ndarray:
    """float32 ramp weights: ``kernel`` times a factor per input channel, in
    float64, rounded once."""
    return (kernel.astype(np.float64) * _kernel_factor(spec, factor)).astype(np.float32)


def build_window_plan(model: Model, window: dict) -> WindowPlan:
    """The plan of ``model`` under the ``window`` settings (model.simulation["window"])."""
    window = check_window_settings(window, model)
    out = model.output_layer
    if not out.is_weighted:
        raise ModelError(f"coding 'ttfs-window' reads the membrane of a weighted output layer; the output "
                         f"layer '{out.name}' is a {out.type}")
    clipped = [s.name for s in model.layers if s.is_weighted and s.max_value is not None]
    if clipped:
        raise ModelError(f"coding 'ttfs-window' does not support clipped ReLU (max_value) yet: layer(s) "
                         f"{', '.join(clipped)}")
    s0, x0 = window["input_steps"], window["input_range"]
    plan = WindowPlan(input_steps=s0, input_range=x0, signed_input=window["signed_input"],
                      zero_spikes=window["zero_spikes"], steps=dict(window["steps"]))
    plan.ref[INPUT_NAME] = 1 + s0
    plan.first[INPUT_NAME] = 1
    # value of one level in the units of the (normalised) model, per element
    unit = {INPUT_NAME: np.full(model.input_shape, x0 / s0)}
    value_range = {INPUT_NAME: np.full(model.input_shape, x0)}
    signed = {INPUT_NAME: plan.signed_input}
    for spec in model.layers:
        ins = spec.inbound
        if spec.type == "Concatenate":
            plan.ref[spec.name] = max(plan.ref[n] for n in ins)
            plan.delays[spec.name] = [plan.ref[spec.name] - plan.ref[n] for n in ins]
            plan.first[spec.name] = min(plan.first[n] + d for n, d in zip(ins, plan.delays[spec.name]))
            axis = concat_axis(spec)
            unit[spec.name] = np.concatenate([unit[n] for n in ins], axis=axis)
            value_range[spec.name] = np.concatenate([value_range[n] for n in ins], axis=axis)
            signed[spec.name] = any(signed[n] for n in ins)
            continue
        if spec.is_branch:
            continue        # no neurons: its synapses are a group of the Add that reads it
        if spec.is_add:
            _plan_add(model, spec, plan, unit, value_range, signed)
            continue
        src = ins[0]
        if spec.is_structural or spec.type == "MaxPooling2D":
            if spec.type == "MaxPooling2D" and signed[src]:
                raise ModelError(f"layer '{spec.name}': max pooling of the signed (ON/OFF) input is not "
                                 "a first spike; use signed_input only with weighted or average-pooling "
                                 "layers reading the input")
            plan.ref[spec.name] = plan.ref[src]
            plan.first[spec.name] = plan.first[src]
            if spec.type == "MaxPooling2D":
                unit[spec.name] = np.broadcast_to(_per_channel(spec.name, unit[src]), spec.output_shape)
                value_range[spec.name] = np.broadcast_to(_per_channel(spec.name, value_range[src]),
                                                         spec.output_shape)
            else:
                unit[spec.name] = ops.structural(spec, [unit[src][None]])[0]
                value_range[spec.name] = ops.structural(spec, [value_range[src][None]])[0]
            signed[spec.name] = signed[src]
            continue
        in_unit = _per_channel(spec.name, unit[src])
        if spec is out:
            plan.read_step = plan.ref[src]
            plan.start[spec.name] = plan.ref[src]
            w = model.weights[spec.name]
            plan.kernel[spec.name] = _ramp_kernel(w["kernel"], spec, in_unit)
            bias = w["bias"] if w["bias"] is not None else np.zeros(spec.output_shape[-1], np.float32)
            plan.out_bias = bias.astype(np.float32)
            continue
        steps = plan.steps[spec.name]
        plan.start[spec.name] = plan.ref[src]
        plan.ref[spec.name] = plan.ref[src] + steps
        plan.first[spec.name] = plan.ref[src]
        signed[spec.name] = False
        if spec.type == "AveragePooling2D":
            rng = _per_channel(spec.name, value_range[src])
            value_range[spec.name] = np.broadcast_to(rng, spec.output_shape)
            unit[spec.name] = np.broadcast_to(rng / steps, spec.output_shape)
            # ramp weight = (1 / cells) * (input level unit / output level unit)
            plan.avg_weight[spec.name] = (in_unit / (rng / steps)
                                          / ops.pool_cell_counts(spec).astype(np.float64)).astype(np.float32)
            plan.theta[spec.name] = np.full(spec.output_shape[-1], steps - 0.5).astype(np.float32)
        else:
            # weighted hidden layer: range 1 in the normalised model, so a level is 1/S
            value_range[spec.name] = np.ones(spec.output_shape)
            unit[spec.name] = np.full(spec.output_shape, 1.0 / steps)
            w = model.weights[spec.name]
            plan.kernel[spec.name] = _ramp_kernel(w["kernel"], spec, in_unit * steps)
            bias = w["bias"].astype(np.float64) if w["bias"] is not None else np.zeros(spec.output_shape[-1])
            plan.theta[spec.name] = (steps - bias * steps - 0.5).astype(np.float32)
    plan.level_unit = unit
    return plan


def _plan_add(model: Model, spec, plan: WindowPlan, unit: dict, value_range: dict, signed: dict) -> None:
    """A residual Add is a windowed layer whose neurons integrate every synapse
    group (WINDOW_SEMANTICS.md "Add"). Its window opens when the latest group
    source's window ends; each group's spikes are delayed by the difference, so
    that every group's ramps run as long as their levels say (as a Concatenate
    delays its inbounds)."""
    groups = add_groups(model, spec)
    steps = plan.steps[spec.name]
    start = max(plan.ref[g.source] for g in groups)
    plan.start[spec.name], plan.ref[spec.name], plan.first[spec.name] = start, start + steps, start
    plan.delays[spec.name] = [start - plan.ref[g.source] for g in groups]
    plan.groups[spec.name] = []
    for g in groups:
        if signed[g.source] and g.layer is None:
            raise ModelError(f"layer '{spec.name}': an identity shortcut from the signed (ON/OFF) input is "
                             "not a level; use signed_input only with weighted layers reading the input")
        factor = _per_channel(spec.name, unit[g.source]) * steps
        # identity: element i to neuron i, the scale per channel
        ramp = (g.kernel.astype(np.float64) * factor).astype(np.float32) if g.layer is None \
            else _ramp_kernel(g.kernel, g.layer, factor)
        plan.groups[spec.name].append((g.source, g.layer, ramp))
    bias = add_bias(model, spec)
    bias = bias.astype(np.float64) if bias is not None else np.zeros(spec.output_shape[-1])
    plan.theta[spec.name] = (steps - bias * steps - 0.5).astype(np.float32)
    value_range[spec.name] = np.ones(spec.output_shape)
    unit[spec.name] = np.full(spec.output_shape, 1.0 / steps)
    signed[spec.name] = False


def plan_for(model: Model, window: dict | None = None) -> WindowPlan:
    """The plan of ``window`` (default: the settings the model carries)."""
    if window is None:
        window = model.simulation.get("window")
        if window is None:
            raise ValueError("coding 'ttfs-window' needs window settings: convert the model with "
                             "ttfs_native.conversion.window.convert_window, or pass window={...}")
    return build_window_plan(model, window)
