"""The CPU backend against the numpy reference on random networks of every layer type."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import netgen
import ttfs_native as tn

def _compare(model, x, labels, **kwargs):
    ref = tn.Simulator(model, backend="reference", **kwargs).run(x, labels)
    cpu = tn.Simulator(model, backend="cpu", **kwargs).run(x, labels)
    same, total = netgen.agreement(ref, cpu)
    return ref, cpu, same / total


@pytest.mark.parametrize("option", sorted(netgen.OPTIONS))
@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES))
def test_cpu_matches_reference(arch, option):
    kwargs = dict(netgen.OPTIONS[option])
    model, x, labels = netgen.make(arch, n=16)
    if option == "early_stop" and arch == "softmax_output":
        with pytest.raises(ValueError, match="early_stop needs a ReLU output"):
            tn.Simulator(model, backend="cpu", **kwargs)
        return
    ref, cpu, _ = _compare(model, x, labels, **kwargs)
    netgen.assert_meets_contract(cpu, ref, f"{arch}/{option}")
    assert ref.spikes_per_neuron > 0.05  # the test network really spikes


def test_signed_input_into_max_pooling():
    """Negative inputs reach a max pool directly: its S and records follow SEMANTICS.md literally."""
    layers = [{"name": "mp", "type": "MaxPooling2D", "pool_size": 2},
              {"name": "flat", "type": "Flatten"},
              {"name": "out", "type": "Dense", "units": 4}]
    rng = np.random.default_rng(3)
    x = rng.random((12, 6, 6, 1), dtype=np.float32) - np.float32(0.7)
    model = netgen.normalised_model((6, 6, 1), layers, x)
    ref, cpu, rate = _compare(model, x, None, duration=12)
    assert rate == 1.0
    np.testing.assert_allclose(cpu.synops_t, ref.synops_t)
    # a negative max still switches S on at step 1, so the record fires from step 2 on
    assert ref.spike_counts["mp"].sum() > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(3, 9), w=st.integers(3, 9), c=st.integers(1, 3), k=st.integers(1, 4),
       kw=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same"]), depthwise=st.booleans(), mult=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_convolution_geometry(h, w, c, k, kw, stride, dilation, padding, depthwise, mult, seed):
    """Any kernel/stride/dilation/padding combination gives the reference's answer."""
    if stride > 1:
        dilation = 1
    if padding == "valid" and ((k - 1) * dilation + 1 > h or (kw - 1) * dilation + 1 > w):
        padding = "same"
    conv = {"name": "conv", "kernel_size": [k, kw], "strides": stride, "dilation_rate": dilation,
            "padding": padding}
    if depthwise:
        conv.update(type="DepthwiseConv2D", depth_multiplier=mult)
    else:
        conv.update(type="Conv2D", filters=mult + 1)
    layers = [conv, {"name": "pool", "type": "AveragePooling2D", "pool_size": 2, "strides": 1,
                     "padding": "same"},
              {"name": "flat", "type": "Flatten"}, {"name": "out", "type": "Dense", "units": 3}]
    rng = np.random.default_rng(seed)
    x = rng.random((4, h, w, c), dtype=np.float32)
    model = netgen.normalised_model((h, w, c), layers, x, seed=seed)
    ref, cpu, rate = _compare(model, x, None, duration=16)
    assert rate >= 0.999
    np.testing.assert_array_equal(cpu.predictions, ref.predictions)
    np.testing.assert_allclose(cpu.synops_t, ref.synops_t)
