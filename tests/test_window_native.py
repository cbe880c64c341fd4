"""The ttfs-window coding on the native backends (docs/WINDOW_SEMANTICS.md, "For
the native backends"): the golden cases bit for bit, and every native backend
equal to the numpy reference on random nets of every layer type, whatever the
batch, the threads, the run's length, dt or early stop."""
from pathlib import Path

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from netgen import NATIVE_BACKENDS, assert_identical
from ttfs_native.conversion.window import convert_window
from ttfs_native.model.window_settings import windowed_layers
from ttfs_native.simulation.plan import build_network

GOLDEN = Path(__file__).parent / "data" / "window"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.npz").exists())
# clipped ReLU (max_value) is refused by this coding for now (test_clear_errors)
ARCHS = sorted(a for a, (_, layers) in netgen.ARCHITECTURES.items() if not any("max_value" in r for r in layers))


def simulate(model, x, labels=None, backend="cpu", **kwargs):
    kwargs.setdefault("duration", model.simulation["duration"])
    return tn.Simulator(model, coding="ttfs-window", backend=backend, **kwargs).run(x, labels)


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_reproduced_bit_for_bit(case, backend):
    folder = GOLDEN / case
    model = tn.load_model(folder / "model")
    x, y = np.load(folder / "x.npy"), np.load(folder / "y.npy")
    result = simulate(model, x, y, backend)
    expected = np.load(folder / "expected.npz")
    for key in expected.files:
        want = expected[key]
        if key.startswith("spike_times/"):
            got = result.first_spike_times[key.split("/", 1)[1]]
        elif key.startswith("spike_counts/"):
            got = result.spike_counts[key.split("/", 1)[1]]
        elif key == "output_membrane":
            got = result.output_membrane.reshape(want.shape)
        else:
            got = getattr(result, key)
        np.testing.assert_array_equal(got, want, err_msg=f"{case} on {backend}: {key}")


@pytest.fixture(scope="module", params=[(a, s) for a in ARCHS for s in (False, True)],
                ids=lambda p: f"{p[0]}{'-signed' if p[1] else ''}")
def converted(request):
    """A converted net of every architecture (signed input too) and the reference's result."""
    arch, signed = request.param
    ann, x, labels = netgen.make(arch, n=7, seed=5, signed_input=signed)
    model = convert_window(ann, x, max_steps=6 * (len(windowed_layers(ann)) + 2), percentile=99.5,
                           zero_spikes=not signed)  # the signed nets leave their level-0 spikes out
    return model, x, labels, simulate(model, x, labels, "reference")


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_native_backends_equal_the_reference(converted, backend):
    model, x, labels, want = converted
    assert want.output_membrane.shape == (len(x), model.num_classes)
    for batch_size, threads in ((None, None), (3, 2), (1, 1)):
        got = simulate(model, x, labels, backend, batch_size=batch_size, num_threads=threads)
        assert_identical(got, want)
        np.testing.assert_array_equal(got.predictions, want.output_membrane.argmax(axis=1))


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_longer_runs_dt_and_early_stop_equal_the_reference(converted, backend):
    model, x, labels, _ = converted
    read = int(model.simulation["duration"])
    for kwargs in (dict(duration=read + 9), dict(duration=(read + 3) * 0.5, dt=0.5),
                   dict(duration=read + 5, early_stop=True), dict(record_spike_times=False)):
        want = simulate(model, x, labels, "reference", **kwargs)
        got = simulate(model, x, labels, backend, **kwargs)
        if kwargs.get("record_spike_times") is False:   # the reference records them regardless
            assert got.first_spike_times == {}
            want.first_spike_times = {}
        assert_identical(got, want)
    stopped = simulate(model, x, labels, backend, duration=read + 5, early_stop=True)
    assert np.all(stopped.stop_step == read) and np.all(stopped.synops_t[:, read:] == 0)


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_parts_with_offsets_equal_one_run(backend):
    ann, x, labels = netgen.make("branches_concat", n=9, seed=2)
    model = convert_window(ann, x, max_steps=40)
    sim = tn.Simulator(model, coding="ttfs-window", backend=backend, duration=model.simulation["duration"])
    whole = sim.run(x, labels)
    parts = [sim.run(x[:4], sample_offset=0), sim.run(x[4:], sample_offset=4)]
    assert_identical(tn.SimulationResult.concatenate(parts, labels=labels), whole)


def test_engine_refuses_a_network_without_window_constants():
    ann, x, _ = netgen.make("mlp", n=2)
    model = convert_window(ann, x, max_steps=30)
    core = tn._core
    sim = tn.Simulator(model, coding="ttfs-window", backend="reference", duration=30)
    plain = build_network(core, model, sim.fanouts)  # no set_window
    window = core.WindowConfig(input_steps=4, input_gain=4.0, signed_input=False, zero_spikes=True, read_step=20)
    config = core.SimConfig(steps=30, dt=1.0, v_thresh=1.0, tau_refrac=30.0, leak=False, seed=0, early_stop=False,
                            coding=core.Coding.window, window=window)
    with pytest.raises(ValueError, match="window constants"):
        core.CpuEngine(plain, config, core.EngineOptions())
    short = core.SimConfig(steps=10, dt=1.0, v_thresh=1.0, tau_refrac=10.0, leak=False, seed=0, early_stop=False,
                           coding=core.Coding.window, window=window)
    with pytest.raises(ValueError, match="read at step 20, but the run has only 10 steps"):
        core.CpuEngine(plain, short, core.EngineOptions())
    with pytest.raises(ValueError, match="threshold per channel"):
        plain.set_window(2, 5, 9, np.zeros(3, np.float32), np.zeros(0, np.float32), [])
    with pytest.raises(ValueError, match="input_steps"):
        core.WindowConfig(input_steps=0, input_gain=1.0, signed_input=False, zero_spikes=True, read_step=3)


def test_output_membrane_only_for_the_window_coding():
    model, x, _ = netgen.make("mlp", n=2)
    sim = tn.Simulator(model, backend="cpu", duration=8)
    assert sim.run(x).output_membrane is None
    core = tn._core
    n, classes, steps = len(x), model.num_classes, 8
    results = core.Results(counts=np.zeros((n, classes, steps), np.int32), first_spike=[],
                           spike_counts=np.zeros((n, 2), np.int64), synops=np.zeros((n, steps)),
                           stop_step=np.zeros(n, np.int32), output_membrane=np.zeros((n, classes), np.float32))
    with pytest.raises(ValueError, match="only the window coding"):
        sim._engine.run(core.Input(x.reshape(n, -1)), results)


@pytest.mark.cuda
def test_layer_schedule_refuses_the_window_coding():
    ann, x, _ = netgen.make("mlp", n=2)
    model = convert_window(ann, x, max_steps=30)
    with pytest.raises(ValueError, match="step schedule only"):
        tn.Simulator(model, coding="ttfs-window", backend="cuda", duration=30,
                     options=tn.simulation.EngineOptions(cuda_schedule="layer"))
