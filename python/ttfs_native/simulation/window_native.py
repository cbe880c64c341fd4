"""The ttfs-window coding handed to the native engines: the network with the
plan's ramp weights (plan.build_network), each node's window constants
(``Network.set_window``: start W, reference step R, thresholds, average
pooling's ramp weights, a Concatenate's delays) and the run-wide ones
(``WindowConfig``: S_0, the input gain, signed input, zero spikes, R_out).
All of them come from window_plan.py unchanged, so the engines do only the
per-step arithmetic of docs/WINDOW_SEMANTICS.md.
"""
from __future__ import annotations

import numpy as np

from ..model import INPUT_NAME, Model
from .plan import build_network
from .window_plan import WindowPlan

_F32 = np.zeros(0, np.float32)


def build_window_network(core, model: Model, fanouts: dict, plan: WindowPlan):
    """A ``_core.Network`` for ``model`` under ``plan``."""
    out = model.output_layer
    weights = {name: (kernel, plan.out_bias if name == out.name else None) for name, kernel in plan.kernel.items()}
    groups = {add: [ramp for _, _, ramp in g] for add, g in plan.groups.items()}
    net = build_network(core, model, fanouts, weights=weights, input_spikes=True, stochastic_softmax=False,
                        group_kernels=groups)
    net.set_window(0, 0, plan.ref[INPUT_NAME], _F32, _F32, [])
    index = 0
    for spec in model.layers:
        if spec.is_branch:
            continue            # emitted with its Add (plan.build_network)
        if spec.is_add:         # its synapse groups: open nodes right before it, each with its delay
            for delay in plan.delays[spec.name]:
                index += 1
                net.set_window(index, 0, 0, _F32, _F32, [int(delay)])
        index += 1
        theta = plan.theta.get(spec.name, _F32)
        weight = plan.avg_weight[spec.name].reshape(-1) if spec.name in plan.avg_weight else _F32
        delay = list(plan.delays.get(spec.name, [0] * len(spec.inbound))) if spec.is_structural else []
        if spec is out:
            start = ref = plan.read_step
        elif spec.is_structural:
            start = ref = 0
        else:
            start, ref = plan.start.get(spec.name, 0), plan.ref[spec.name]
        net.set_window(index, start, ref, np.asarray(theta, np.float32), np.asarray(weight, np.float32), delay)
    return net


def window_config(core, plan: WindowPlan):
    """The run-wide constants: g = f64(S_0) / f64(X_0) as WINDOW_SEMANTICS.md "Input" defines it."""
    gain = float(np.float64(plan.input_steps) / np.float64(plan.input_range))
    return core.WindowConfig(input_steps=int(plan.input_steps), input_gain=gain, signed_input=bool(plan.signed_input),
                             zero_spikes=bool(plan.zero_spikes), read_step=int(plan.read_step))
