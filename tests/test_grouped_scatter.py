"""The grouped scatter (csrc/cpu/grouped_scatter.h): wide Conv2D and Dense layers,
whose changes of one input cell the AVX kernels scatter together with their
sums in registers, and pooling and depthwise layers with many channels,
whose cells' windows are found once for all their changes, give the portable kernels' results bit for bit, with one
thread and with threads sharing a layer, and meet the contract against the
reference."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn

# Runs of 96 * 3, 80 * 3 and 64 * 3 sums (a kernel row of filters) and 160,
# 141 units: long enough for the grouped scatter on AVX-512 (>= 128) and AVX2
# (>= 64), with blocks and a remainder. pool_a (overlapping windows, same
# padding) and dw (depth multiplier 2) read 96 and 80 channels: their cells'
# events are scattered in groups too. conv_c (vertical dilation) reads 96
# channels and conv_b 160, so a cell with more than 64 changes is scattered
# as several groups; conv_b's stride 2 tests the row layout's residues;
# dense_cells is a Dense layer on a 3-D tensor (one group per cell).
WIDE = ((9, 9, 3), [
    netgen.conv_layer("conv_a", 96, 3),
    {"name": "pool_a", "type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
    netgen.conv_layer("conv_c", 80, 3, dilation=[2, 1]),
    {"name": "dw", "type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
    netgen.conv_layer("conv_b", 64, 3, strides=2),
    {"name": "dense_cells", "type": "Dense", "units": 160},
    {"name": "flat", "type": "Flatten"},
    {"name": "dense_flat", "type": "Dense", "units": 141},
    {"name": "out", "type": "Dense", "units": 10}])


@pytest.fixture(scope="module")
def wide_case():
    shape, layers = WIDE
    x = np.random.default_rng(3).random((10,) + shape, dtype=np.float32)
    model = netgen.normalised_model(shape, layers, x, seed=5)
    return model, x


def _run(model, x, **options):
    threads = options.pop("threads", 1)
    return tn.Simulator(model, duration=30, backend="cpu", num_threads=threads,
                        options=tn.simulation.EngineOptions(**options)).run(x)


@pytest.mark.skipif(tn.build_info()["cpu_kernels"] == "generic",
                    reason="this CPU has no AVX2: only the portable kernels run here")
@pytest.mark.parametrize("sums", ["float64", "float32"])
def test_grouped_scatter_equals_the_portable_kernels(wide_case, sums):
    model, x = wide_case
    generic = _run(model, x, cpu_kernels="generic", cpu_sums=sums)
    assert generic.spikes_per_neuron > 0.1
    for options in (dict(cpu_kernels="avx2"), dict(cpu_kernels="auto"),
                    dict(cpu_kernels="auto", cpu_share="all", threads=2)):
        got = _run(model, x, cpu_sums=sums, **options)
        netgen.assert_identical(got, generic)


def test_wide_layers_meet_the_contract_against_the_reference(wide_case):
    model, x = wide_case
    ref = tn.Simulator(model, duration=30, backend="reference").run(x)
    netgen.assert_meets_contract(_run(model, x), ref, "wide")


def test_wide_layers_with_float32_sums_meet_their_contract(wide_case):
    """cpu_sums='float32' (opt-in): first-spike times within 99.99% of the reference's, predictions equal."""
    model, x = wide_case
    ref = tn.Simulator(model, duration=30, backend="reference").run(x)
    got = _run(model, x, cpu_sums="float32")
    same, total = netgen.agreement(ref, got)
    assert same / total >= 0.9999, same / total
    np.testing.assert_array_equal(got.predictions, ref.predictions)
