"""The CPU engine's fast paths for the ttfs-window coding, bit for bit against
the numpy reference (docs/WINDOW_SEMANTICS.md, "For the native backends"):
convolutions with any horizontal stride scattered in row layout
(synapse.h, conv_rows_apply), average pooling folded into the next
convolution (a kernel `pool` times larger with stride `pool`: residue
groups of several taps) or Dense layer, the vectorised neuron pass with its
fired-neuron scan, on both CPU kernel sets, with and without level-0 spikes
and with the signed input. The nets of netgen.ARCHITECTURES have no folded
pooling and only strided kernels of at most one tap per residue, so a wrong
row layout for them would pass there."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn
from netgen import assert_identical, conv_layer
from ttfs_native.conversion.window import convert_window
from ttfs_native.model.transforms import fold_average_pooling

POOL = {"type": "AveragePooling2D", "pool_size": 2, "strides": 2, "padding": "valid"}

NETS = {
    # a LeNet: both poolings fold (a 6x6 stride-2 convolution, a Dense on the unpooled map)
    "lenet_folded": ((12, 12, 2), [
        conv_layer("c1", 4, 3, padding="same"), dict(POOL, name="p1"),
        conv_layer("c2", 5, 3, padding="valid"), dict(POOL, name="p2"),
        {"name": "flat", "type": "Flatten"},
        {"name": "d1", "type": "Dense", "units": 8},
        {"name": "out", "type": "Dense", "units": 5}]),
    # pooling folded into a padded convolution (a ZeroPadding2D in front), then into a strided one
    "folded_padded": ((8, 16, 3), [
        conv_layer("c1", 3, [2, 3], padding="same"), dict(POOL, name="p1"),
        conv_layer("c2", 4, [3, 2], strides=[1, 2], padding="same"), dict(POOL, name="p2"),
        conv_layer("c3", 6, [1, 2], padding="valid"),
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 4}]),
    # kernels wider than, narrower than and not a multiple of the horizontal stride
    "odd_strides": ((13, 17, 2), [
        conv_layer("c1", 4, [3, 5], strides=[2, 3], padding="same"),
        conv_layer("c2", 5, [2, 7], strides=[1, 4], padding="same"),
        conv_layer("c3", 3, [3, 2], strides=[1, 3], padding="valid"),
        {"name": "flat", "type": "Flatten"},
        {"name": "out", "type": "Dense", "units": 6}]),
}


def make(name, signed, zero_spikes, n=9, seed=3):
    shape, layers = NETS[name]
    rng = np.random.default_rng(100 + seed)
    x = rng.random((n,) + shape, dtype=np.float32) - np.float32(0.3 if signed else 0.0)
    ann = netgen.normalised_model(shape, layers, x, seed=seed)
    steps = 7 * (sum(s.type in ("Conv2D", "Dense", "AveragePooling2D") for s in ann.layers) + 1)
    model = convert_window(ann, x, max_steps=steps, percentile=99.5, zero_spikes=zero_spikes)
    return model, x, rng.integers(0, model.num_classes, n)


def strided_rows(model):
    """(kernel_w, stride_w) of the model's Conv2D layers with a horizontal stride > 1."""
    return [(s.config["kernel_size"][1], s.config["strides"][1]) for s in model.layers
            if s.type == "Conv2D" and s.config["strides"][1] > 1]


def test_the_nets_exercise_the_paths():
    folded, _, _ = make("lenet_folded", False, True)
    assert not any(s.type == "AveragePooling2D" for s in folded.layers)
    assert (6, 2) in strided_rows(folded)              # 3 taps per residue
    padded, _, _ = make("folded_padded", False, True)
    assert any(s.type == "ZeroPadding2D" for s in padded.layers)
    assert {(4, 4), (4, 2)} <= set(strided_rows(padded))
    odd, _, _ = make("odd_strides", False, True)
    assert {(5, 3), (7, 4), (2, 3)} <= set(strided_rows(odd))


@pytest.mark.parametrize("signed,zero_spikes", [(False, True), (False, False), (True, False), (True, True)])
@pytest.mark.parametrize("name", sorted(NETS))
def test_cpu_fast_paths_equal_the_reference(name, signed, zero_spikes):
    model, x, labels = make(name, signed, zero_spikes)
    read = int(model.simulation["duration"])
    want = tn.Simulator(model, coding="ttfs-window", backend="reference", duration=read + 2).run(x, labels)
    assert want.spikes_per_neuron > 0.2
    for kernels in ("auto", "generic"):
        for threads in (1, 2):
            options = tn.simulation.EngineOptions(cpu_kernels=kernels)
            got = tn.Simulator(model, coding="ttfs-window", backend="cpu", duration=read + 2,
                               num_threads=threads, options=options).run(x, labels)
            assert_identical(got, want)
            np.testing.assert_array_equal(got.output_membrane, want.output_membrane)


@pytest.mark.parametrize("name", ["odd_strides", "lenet_folded"])
def test_original_coding_strided_rows_equal_the_reference(name):
    """The original coding's CPU engine scatters the same convolutions in row layout
    (its agreement contract with the reference, SEMANTICS.md)."""
    shape, layers = NETS[name]
    rng = np.random.default_rng(7)
    x = rng.random((12,) + shape, dtype=np.float32)
    ann = fold_average_pooling(netgen.normalised_model(shape, layers, x, seed=7))
    assert strided_rows(ann)
    labels = rng.integers(0, ann.num_classes, len(x))
    ref = tn.Simulator(ann, backend="reference", duration=30).run(x, labels)
    for kernels in ("auto", "generic"):
        cpu = tn.Simulator(ann, backend="cpu", duration=30,
                           options=tn.simulation.EngineOptions(cpu_kernels=kernels)).run(x, labels)
        netgen.assert_meets_contract(cpu, ref, f"{name} {kernels}")
