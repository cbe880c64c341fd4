"""What the neurons of an Add layer integrate (SEMANTICS.md "Add"), once for
every backend: the numpy reference and the plan of the native engines both
read the synapse groups and the bias from here, so they use the same float32
numbers.

An Add's neuron i integrates, from each inbound b, a synapse group:

* a *weighted branch* (a Dense, Conv2D or DepthwiseConv2D layer with a linear
  activation read only by this Add; it has no neurons of its own) reads the
  branch layer's input through the kernel ``scales[b] * W_b``;
* any other inbound layer is an *identity* group: element i of that layer's
  output reaches neuron i with weight ``scales[b]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import LayerSpec
from .model import Model


@dataclass
class SynapseGroup:
    """One inbound of an Add as its neurons see it."""

    source: str                 # the layer (or "input") whose signal and prospective map the group reads
    layer: LayerSpec | None     # the weighted branch, None for an identity group
    kernel: np.ndarray          # float32: the branch's kernel times its scale; identity: (channels,) scales


def branch_of(model: Model, inbound: str) -> LayerSpec | None:
    """The weighted branch an Add's inbound is, or None for an identity inbound."""
    layer = model.layer(inbound) if inbound != "input" else None
    return layer if layer is not None and layer.is_branch else None


def group_source(model: Model, inbound: str) -> str:
    """The layer (or "input") whose signal an Add's inbound group reads: a branch's input, else itself."""
    branch = branch_of(model, inbound)
    return branch.inbound[0] if branch is not None else inbound


def add_groups(model: Model, spec: LayerSpec) -> list:
    """The synapse groups of Add ``spec``, in inbound order."""
    groups = []
    for name, scale in zip(spec.inbound, spec.scales):
        branch, s = branch_of(model, name), np.float32(scale)
        if branch is not None:
            kernel = model.weights[name]["kernel"]
            groups.append(SynapseGroup(group_source(model, name), branch, kernel if scale == 1.0 else kernel * s))
        else:
            groups.append(SynapseGroup(name, None, np.full(spec.output_shape[-1], s, np.float32)))
    return groups


def add_bias(model: Model, spec: LayerSpec) -> np.ndarray | None:
    """The Add's bias per channel: the sum of ``scales[b] * bias_b`` over its
    branches with a bias, in float32, in inbound order (None when none has one)."""
    total = None
    for name, scale in zip(spec.inbound, spec.scales):
        if branch_of(model, name) is None or model.weights[name]["bias"] is None:
            continue
        bias = model.weights[name]["bias"]
        bias = bias if scale == 1.0 else bias * np.float32(scale)
        total = bias.copy() if total is None else total + bias
    return total
