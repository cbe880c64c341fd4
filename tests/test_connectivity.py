"""Operation counts: exact fan-outs equal brute-force connection counts."""
import numpy as np
import pytest

import netgen
from ttfs_native.model import connectivity, ops
from ttfs_native.model import INPUT_NAME


def _brute_force_fanout(model, name):
    """Count, for each element of `name`, the neurons of the next spiking layers it reaches
    through one synapse, by pushing one-hot inputs through each consumer with all-ones weights."""
    shape = model.shape_of(name)
    size = int(np.prod(shape))
    eye = np.eye(size, dtype=np.float32).reshape((size,) + shape)
    total = np.zeros(size)

    def push(src, values):
        for spec in model.layers:
            if src not in spec.inbound:
                continue
            if spec.is_structural:
                ins = [values if n == src else np.zeros((size,) + model.shape_of(n), np.float32)
                       for n in spec.inbound]
                push(spec.name, ops.structural(spec, ins))
            elif spec.type in ("MaxPooling2D", "AveragePooling2D"):
                # connections of a pool are its window taps: the average pooling numerators
                # (an upsampled cell reaches a window once per copy)
                out = ops.average_pool(values, spec) * ops.pool_cell_counts(spec)
                total[:] += np.rint(out).reshape(size, -1).sum(axis=1)
            elif spec.is_add:   # an identity inbound: element i reaches the Add's neuron i
                total[:] += values.reshape(size, -1).sum(axis=1)
            else:   # (a residual branch's connections reach its Add's neurons)
                w = model.weights[spec.name]["kernel"]
                out = ops.weighted(spec, values, np.ones_like(w), None)
                total[:] += out.reshape(size, -1).sum(axis=1)
    push(name, eye)
    return total.reshape(shape)


@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES))
def test_exact_fanout_counts_every_connection(arch):
    model, _, _ = netgen.make(arch, n=2)
    fanouts = connectivity.exact_fanouts(model)
    for name in [INPUT_NAME] + [s.name for s in model.spiking_layers]:
        np.testing.assert_array_equal(fanouts[name], _brute_force_fanout(model, name), err_msg=name)


def test_exact_ann_ops_is_twice_the_connections_plus_biases():
    model, _, _ = netgen.make("mlp", n=2)
    # Flatten 72 -> Dense 32 -> Dense 10, both with bias
    assert connectivity.ann_operations(model, "exact") == 2 * (72 * 32 + 32 * 10) + 32 + 10
