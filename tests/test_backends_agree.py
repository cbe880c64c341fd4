"""The CPU backend against the numpy reference on random networks of every layer type."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

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
    case = netgen.option_case(arch, option, "cpu")
    if case is None:  # refused, as it must be
        return
    model, x, labels, kwargs = case
    ref, cpu, _ = _compare(model, x, labels, **kwargs)
    netgen.assert_meets_contract(cpu, ref, f"{arch}/{option}")
    assert ref.spikes_per_neuron > 0.05  # the test network really spikes


def test_signed_input_into_max_pooling():
    """Negative inputs reach a max pool directly: its S and records follow SEMANTICS.md literally."""
    model, x = netgen.signed_max_pool_case()
    ref, cpu, rate = _compare(model, x, None, duration=12)
    assert rate == 1.0
    np.testing.assert_allclose(cpu.synops_t, ref.synops_t)
    # a negative max still switches S on at step 1, so the record fires from step 2 on
    assert ref.spike_counts["mp"].sum() > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**netgen.GEOMETRY)
def test_convolution_geometry(**geometry):
    """Any kernel/stride/dilation/padding/depth-multiplier combination gives the reference's answer."""
    model, x = netgen.geometry_case(**geometry)
    ref, cpu, _ = _compare(model, x, None, duration=16)
    netgen.assert_meets_contract(cpu, ref)


@pytest.mark.skipif(tn.build_info()["cpu_kernels"] == "generic",
                    reason="this CPU runs the portable kernels already (the other tests cover them)")
def test_portable_cpu_kernels_give_identical_results():
    """cpu_kernels='generic' forces the kernels that CPUs without AVX2 (aarch64
    wheels) run, 'avx2' at most AVX2: every kernel set this CPU has (AVX-512,
    AVX2) gives the portable kernels' results bit for bit."""
    model, _, _ = netgen.make("mlp", n=1)
    kernels = {}
    for requested in ("generic", "avx2", "auto"):
        options = tn.simulation.EngineOptions(cpu_kernels=requested)
        kernels.setdefault(tn.Simulator(model, duration=4, backend="cpu", options=options)._engine.kernels,
                           options)
    assert "generic" in kernels and "avx2" in kernels
    generic = netgen.case_results(options=kernels.pop("generic"))
    assert sum(k.endswith("/counts") for k in generic) > 40
    for name, options in kernels.items():
        vector = netgen.case_results(options=options)
        assert sorted(generic) == sorted(vector), name
        for key, value in vector.items():
            np.testing.assert_array_equal(generic[key], value, err_msg=f"{name}: {key}")


def test_float32_sums_meet_the_agreement_contract():
    """cpu_sums='float32' (the CPU engine's running sums in float32, opt-in):
    on every architecture and option case, first-spike times agree with the
    reference on at least 99.99% and with the default float64 sums on at
    least 99.99%, predictions equal, and the vector and portable kernels
    give the same float32 results bit for bit."""
    float32 = tn.simulation.EngineOptions(cpu_sums="float32")
    same_ref = same_f64 = total = 0
    for arch in sorted(netgen.ARCHITECTURES):
        for option in sorted(netgen.OPTIONS):
            case = netgen.option_case(arch, option, "cpu")
            if case is None:
                continue
            model, x, labels, kwargs = case
            ref = tn.Simulator(model, backend="reference", **kwargs).run(x, labels)
            f64 = tn.Simulator(model, backend="cpu", **kwargs).run(x, labels)
            f32 = tn.Simulator(model, backend="cpu", options=float32, **kwargs).run(x, labels)
            np.testing.assert_array_equal(f32.predictions, ref.predictions, err_msg=f"{arch}/{option}")
            s, n = netgen.agreement(ref, f32)
            same_ref, total = same_ref + s, total + n
            same_f64 += netgen.agreement(f64, f32)[0]
    assert total > 10_000
    assert same_ref / total >= 0.9999 and same_f64 / total >= 0.9999, (same_ref / total, same_f64 / total)
    generic = netgen.case_results(options=tn.simulation.EngineOptions(cpu_sums="float32", cpu_kernels="generic"))
    vector = netgen.case_results(options=float32)
    for key, value in vector.items():
        np.testing.assert_array_equal(generic[key], value, err_msg=key)
