"""The CUDA backend against the numpy reference and the CPU backend.

Skipped as a whole where no usable GPU is visible (build_info()["cuda_available"]).
Both native backends sum synaptic input in float64 before rounding to float32, so
CUDA must give the CPU backend's results bit for bit; against the float32
reference it must meet the contract (>= 99.9% of first-spike times, every
prediction).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import netgen
import ttfs_native as tn
from netgen import assert_identical

BACKEND = "cuda"
INFO = tn.build_info()
pytestmark = netgen.CUDA_SKIP


@pytest.fixture(autouse=True, params=["step", "layer"])
def schedule(request, monkeypatch):
    """Every CUDA test runs with both time loops: step by step (the default) and
    layer by layer (cuda_schedule='layer'). Tests that build their own options
    name it; the others take it as the documented environment default."""
    monkeypatch.setenv("TTFS_CUDA_SCHEDULE", request.param)
    return request.param


def opts(schedule, **kwargs):
    return tn.simulation.EngineOptions(cuda_schedule=schedule, **kwargs)


def test_cuda_is_available_and_chosen_by_auto():
    assert INFO["cuda"] and INFO["cuda_available"]
    assert INFO["cuda_status"]  # the device's description
    ok, reason = tn._core.cuda_device_status()
    assert ok and reason == INFO["cuda_status"]
    model, _, _ = netgen.make("mlp", n=2)
    assert tn.Simulator(model, duration=4).backend == "cuda"


def test_schedule_is_the_one_asked_for_where_supported(schedule, monkeypatch):
    model, x, labels = netgen.make("depthwise_maxpool", n=3)
    sim = tn.Simulator(model, duration=10, backend=BACKEND)
    assert sim._engine.schedule == schedule
    assert sim._engine.window_steps == (10 if schedule == "layer" else 0)
    # the layer-major kernels run at most 1024 steps per window (per-block totals in
    # shared memory): a longer run takes several windows
    long_run = tn.Simulator(model, duration=1025, backend=BACKEND)
    assert long_run._engine.schedule == schedule
    assert long_run._engine.window_steps == (1024 if schedule == "layer" else 0)
    assert_identical(long_run.run(x[:1]), tn.Simulator(model, duration=1025, backend="cpu").run(x[:1]))
    with pytest.raises(ValueError, match=r"cuda_schedule must be one of \['step', 'layer'\], got 'layers'"):
        tn.Simulator(model, duration=10, backend=BACKEND, options=opts("layers"))
    monkeypatch.setenv("TTFS_CUDA_SCHEDULE", "layers")
    with pytest.raises(ValueError, match="environment variable TTFS_CUDA_SCHEDULE .* got 'layers'"):
        tn.Simulator(model, duration=10, backend=BACKEND)


@pytest.mark.parametrize("option", sorted(netgen.OPTIONS))
@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES))
def test_cuda_matches_reference_and_cpu(arch, option):
    case = netgen.option_case(arch, option, BACKEND)
    if case is None:  # refused, as it must be
        return
    model, x, labels, kwargs = case
    ref = tn.Simulator(model, backend="reference", **kwargs).run(x, labels)
    got = tn.Simulator(model, backend=BACKEND, **kwargs).run(x, labels)
    netgen.assert_meets_contract(got, ref, f"{arch}/{option}")
    assert ref.spikes_per_neuron > 0.05  # the test network really spikes
    assert_identical(got, tn.Simulator(model, backend="cpu", **kwargs).run(x, labels))


@pytest.mark.parametrize("window", [1, 3, 7])
@pytest.mark.parametrize("arch, kwargs", [
    ("depthwise_maxpool", dict(duration=20)),
    ("depthwise_maxpool", dict(duration=40, early_stop=True)),
    ("branches_concat", dict(duration=16)),
    ("softmax_output", dict(duration=16, seed=5)),
    ("conv_strides_dilation", dict(duration=30, early_stop=True, tau_refrac=4.0)),
])
def test_layer_windows_equal_cpu(schedule, monkeypatch, window, arch, kwargs):
    """The layer-major loop split into windows of steps (cuda_window): each neuron's
    registers are saved and restored between windows, so the results are the CPU's bit
    for bit, early stop included (samples that stopped are skipped by later windows)."""
    model, x, labels = netgen.make(arch, n=5)
    sim = tn.Simulator(model, backend=BACKEND, batch_size=3, options=opts(schedule, cuda_window=window),
                       **kwargs)
    assert sim._engine.window_steps == (window if schedule == "layer" else 0)
    got = sim.run(x, labels)
    want = tn.Simulator(model, backend="cpu", **kwargs).run(x, labels)
    assert_identical(got, want)
    if kwargs.get("early_stop"):
        assert np.any(want.stop_step < want.steps)  # samples really stopped early


def test_layer_early_stop_ends_the_run(schedule, monkeypatch, capfd):
    """With early stop the layer-major loop runs windows only until every sample stopped."""
    model, x, labels = netgen.make("depthwise_maxpool", n=4)
    want = tn.Simulator(model, duration=200, backend="cpu", early_stop=True).run(x)
    last_stop = int(want.stop_step.max())
    assert last_stop < 150
    got = tn.Simulator(model, duration=200, backend=BACKEND, early_stop=True,
                       options=opts(schedule, cuda_profile=True, cuda_window=25)).run(x)
    assert_identical(got, want)
    if schedule == "layer":
        err = capfd.readouterr().err
        ran = -(-last_stop // 25) * 25  # through the end of the window of the last stop
        assert f"out (10 elements, steps {ran - 24}-{ran})" in err
        assert f"steps {ran + 1}-" not in err


@pytest.mark.parametrize("value", ["0", "1025", "ten", "3.5"])
def test_bad_window_is_refused(value, monkeypatch):
    model, _, _ = netgen.make("mlp", n=2)
    with pytest.raises(ValueError, match="cuda_window must be None or a number of steps from 1 to 1024"):
        tn.Simulator(model, duration=10, backend=BACKEND, options=opts("layer", cuda_window=value))
    monkeypatch.setenv("TTFS_CUDA_WINDOW", value)
    with pytest.raises(ValueError, match="environment variable TTFS_CUDA_WINDOW .*from 1 to 1024"):
        tn.Simulator(model, duration=10, backend=BACKEND)


def test_wide_layers_equal_cpu():
    """Conv2D and Dense layers with multiples of 32 input and output channels: in the
    layer-major schedule their warps scan the fan-in together (warp_scan_chunks), at
    the borders, with strides and dilation too."""
    layers = [netgen.conv_layer("c1", 32, 3, padding="same"),
              netgen.conv_layer("c2", 64, 3, strides=2, padding="same"),
              netgen.conv_layer("c3", 32, [2, 3], padding="valid", dilation=[2, 1]),
              {"name": "dmap", "type": "Dense", "units": 32},
              {"name": "flat", "type": "Flatten"},
              {"name": "d1", "type": "Dense", "units": 64},
              {"name": "out", "type": "Dense", "units": 10}]
    rng = np.random.default_rng(4)
    x = rng.random((6, 9, 8, 2), dtype=np.float32)
    model = netgen.normalised_model((9, 8, 2), layers, x)
    got = tn.Simulator(model, duration=40, backend=BACKEND, batch_size=4).run(x)
    assert_identical(got, tn.Simulator(model, duration=40, backend="cpu").run(x))
    assert got.spike_counts["c3"].sum() > 0 and got.spike_counts["d1"].sum() > 0


def test_signed_input_into_max_pooling():
    """Negative inputs reach a max pool directly (its S switches on at a negative max)."""
    model, x = netgen.signed_max_pool_case()
    got = tn.Simulator(model, duration=12, backend=BACKEND).run(x)
    assert_identical(got, tn.Simulator(model, duration=12, backend="cpu").run(x))
    assert got.spike_counts["mp"].sum() > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**netgen.GEOMETRY)
def test_convolution_geometry(**geometry):
    """Any kernel/stride/dilation/padding/depth-multiplier combination gives the CPU's answer."""
    model, x = netgen.geometry_case(**geometry)
    got = tn.Simulator(model, duration=16, backend=BACKEND).run(x)
    assert_identical(got, tn.Simulator(model, duration=16, backend="cpu").run(x))


# ------------------------------------------------------------------ golden cases
def test_golden_case_reproduced(golden_case):
    result, expected = netgen.run_golden(golden_case, BACKEND)
    netgen.assert_golden(result, expected, f"{golden_case.name}/{BACKEND}")


def test_golden_early_stop_equals_cpu(golden_case):
    got, _ = netgen.run_golden(golden_case, BACKEND, early_stop=True)
    want, _ = netgen.run_golden(golden_case, "cpu", early_stop=True)
    assert_identical(got, want)
    assert np.any(got.stop_step < got.steps)  # samples really stopped early


# ------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("seed", [0, 7, 2 ** 40 + 5])
def test_softmax_stream_equals_cpu(seed):
    """The stochastic softmax output draws the CPU's Philox numbers: sample index in
    the whole input (not the batch), neuron index, step; both words of the seed."""
    model, x, labels = netgen.make("softmax_output", n=30)
    got = tn.Simulator(model, duration=40, seed=seed, backend=BACKEND, batch_size=7).run(x, labels)
    want = tn.Simulator(model, duration=40, seed=seed, backend="cpu", batch_size=11).run(x, labels)
    assert_identical(got, want)
    assert got.spike_counts["out"].sum() > 0


@pytest.mark.parametrize("arch", ["mlp", "depthwise_maxpool", "branches_concat"])
def test_early_stop_equals_cpu(arch):
    """Per-sample early stop, over many steps so that every sample stops long before the end."""
    model, x, labels = netgen.make(arch, n=20, seed=3)
    kwargs = dict(duration=300, early_stop=True)
    got = tn.Simulator(model, backend=BACKEND, **kwargs).run(x, labels)
    assert_identical(got, tn.Simulator(model, backend="cpu", **kwargs).run(x, labels))
    full = tn.Simulator(model, duration=300, backend=BACKEND).run(x, labels)
    np.testing.assert_array_equal(got.predictions, full.predictions)
    assert np.all(got.stop_step[got.predictions >= 0] < 300)


@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES))
def test_results_do_not_depend_on_the_batch(arch):
    model, x, labels = netgen.make(arch, n=37, seed=1)
    runs = [tn.Simulator(model, duration=30, backend=BACKEND, batch_size=b).run(x, labels)
            for b in (1, 5, 37)]
    for r in runs[1:]:
        assert_identical(r, runs[0])
    if arch != "softmax_output":  # (softmax draws depend on the sample's index in the input)
        # a sample alone gives what it gives among others
        alone = tn.Simulator(model, duration=30, backend=BACKEND).run(x[13:14])
        np.testing.assert_array_equal(alone.counts[0], runs[0].counts[13])
        for name, times in alone.first_spike_times.items():
            np.testing.assert_array_equal(times[0], runs[0].first_spike_times[name][13])


def test_engine_reuse_across_runs_and_batch_sizes():
    """Buffers and step graphs are reused (or rebuilt) without changing any result."""
    model, x, labels = netgen.make("conv_strides_dilation", n=50, seed=2)
    sim = tn.Simulator(model, duration=30, backend=BACKEND, batch_size=16)
    first = sim.run(x, labels)
    assert_identical(sim.run(x, labels), first)      # same buffers, same graphs
    small = sim.run(x[:3], labels[:3])                # a smaller chunk: another graph
    assert_identical(small, tn.Simulator(model, duration=30, backend="cpu").run(x[:3], labels[:3]))
    sim.batch_size = 50                               # a larger batch: new buffers
    assert_identical(sim.run(x, labels), first)


def test_layer_profile_names_every_launch(schedule, monkeypatch, capfd):
    """cuda_profile=True makes the layer-major loop print each launch's time (for tuning);
    TTFS_CUDA_PROFILE=1 is its environment default."""
    model, x, labels = netgen.make("branches_concat", n=2)
    monkeypatch.setenv("TTFS_CUDA_PROFILE", "1")
    tn.Simulator(model, duration=6, backend=BACKEND).run(x)
    err = capfd.readouterr().err
    if schedule == "layer":
        assert "cuda_profile layer-major, 2 samples, 6 steps" in err
        for spec in model.layers:
            assert f" ms  {spec.name} (" in err, spec.name
        assert " ms  readout" in err
    else:
        assert "cuda_profile" not in err


def test_memory_limit_splits_the_batch_into_chunks():
    """A batch larger than cuda_memory_limit allows runs in chunks with the same results;
    a limit below one sample is an error naming the sizes."""
    model, x, labels = netgen.make("depthwise_maxpool", n=10, seed=4)
    unlimited = tn.Simulator(model, duration=20, backend=BACKEND, batch_size=10)
    per_sample = unlimited._engine.bytes_per_sample
    assert per_sample > 0 and unlimited._engine.chunk_capacity == 0
    want = unlimited.run(x, labels)
    assert unlimited._engine.chunk_capacity == 10
    limited = tn.Simulator(model, duration=20, backend=BACKEND, batch_size=10,
                           cuda_memory_limit=3 * per_sample + per_sample // 2)
    assert_identical(limited.run(x, labels), want)
    assert limited._engine.chunk_capacity == 3
    tiny = tn.Simulator(model, duration=20, backend=BACKEND, cuda_memory_limit=per_sample // 2)
    with pytest.raises(RuntimeError, match=r"one sample needs .* within cuda_memory_limit="):
        tiny.run(x[:1])


def test_more_samples_than_one_launch_holds():
    """Over 65535 samples in one call are split into chunks on the device."""
    layers = [{"name": "flat", "type": "Flatten"},
              {"name": "d1", "type": "Dense", "units": 6},
              {"name": "out", "type": "Dense", "units": 3}]
    rng = np.random.default_rng(5)
    x = rng.random((66000, 3, 3, 1), dtype=np.float32)
    model = netgen.normalised_model((3, 3, 1), layers, x[:500])
    got = tn.Simulator(model, duration=8, backend=BACKEND, batch_size=66000).run(x)
    want = tn.Simulator(model, duration=8, backend="cpu", batch_size=66000).run(x)
    assert_identical(got, want)


# ------------------------------------------------------------ device memory in and out
def test_device_array_round_trip():
    x = np.random.default_rng(0).random((3, 4, 5), dtype=np.float32)
    d = tn.DeviceArray.from_numpy(x)
    assert d.shape == (3, 4, 5) and d.dtype == np.float32 and len(d) == 3 and d.size == 60
    assert d.__dlpack_device__() == (2, d.device)
    np.testing.assert_array_equal(d.numpy(), x)
    np.testing.assert_array_equal(np.asarray(d), x)
    assert "shape=(3, 4, 5)" in repr(d)


def test_device_array_dlpack_takes_the_consumers_stream():
    """__dlpack__(stream=...) follows the array API's convention for CUDA: None, 1, 2,
    -1 or a stream handle; 0 is ambiguous and anything but an integer is wrong."""
    d = tn.DeviceArray.from_numpy(np.ones((2, 3), np.float32))
    for stream in (None, -1, 1, 2):
        assert type(d.__dlpack__(stream=stream)).__name__ == "PyCapsule"
    with pytest.raises(ValueError, match="stream 0 is not a CUDA stream"):
        d.__dlpack__(stream=0)
    with pytest.raises(TypeError, match="stream must be an integer or None, got str"):
        d.__dlpack__(stream="default")


@pytest.mark.parametrize("batch_size", [None, 5])
def test_device_input_and_device_spike_times_equal_host_run(batch_size):
    model, x, labels = netgen.make("depthwise_maxpool", n=12)
    host = tn.Simulator(model, duration=30, backend=BACKEND, batch_size=batch_size).run(x, labels)
    on_device = tn.DeviceArray.from_numpy(x)
    assert_identical(tn.Simulator(model, duration=30, backend=BACKEND, batch_size=batch_size)
                     .run(on_device, labels), host)
    sim = tn.Simulator(model, duration=30, backend=BACKEND, batch_size=batch_size, spike_times_on_device=True)
    for source in (x, on_device):
        got = sim.run(source, labels)
        for name, times in got.first_spike_times.items():
            assert isinstance(times, tn.DeviceArray) and times.shape == host.first_spike_times[name].shape
        assert_identical(got, host)


def test_bad_device_input_is_refused():
    model, x, _ = netgen.make("mlp", n=4)
    sim = tn.Simulator(model, duration=10, backend=BACKEND)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        sim.run(tn.DeviceArray.from_numpy(bad))
    with pytest.raises(ValueError, match="has shape"):
        sim.run(tn.DeviceArray.from_numpy(x[:, :-1]))
    with pytest.raises(ValueError, match="no samples"):
        sim.run(tn.DeviceArray.from_numpy(x[:0]))


def test_failed_dlpack_export_is_a_clear_error():
    model, x, _ = netgen.make("mlp", n=2)
    sim = tn.Simulator(model, duration=10, backend=BACKEND)

    class RefusesExport:  # like a PyTorch CUDA tensor that requires grad
        def __dlpack_device__(self):
            return (2, sim._engine.device)

        def __dlpack__(self, **kwargs):
            raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")

    with pytest.raises(ValueError, match="could not be exported through DLPack.*detach"):
        sim.run(RefusesExport())


def test_torch_cuda_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    model, x, labels = netgen.make("depthwise_maxpool", n=8)
    host = tn.Simulator(model, duration=30, backend=BACKEND).run(x, labels)
    xt = torch.from_numpy(x).cuda()
    sim = tn.Simulator(model, duration=30, backend=BACKEND, spike_times_on_device=True)
    got = sim.run(xt, labels)
    assert_identical(got, host)
    for name, times in got.first_spike_times.items():
        t = torch.from_dlpack(times)
        assert t.is_cuda
        np.testing.assert_array_equal(t.cpu().numpy(), host.first_spike_times[name])
    with pytest.raises(ValueError, match="must be float32"):
        sim.run(xt.double())
    with pytest.raises(ValueError, match="not C-contiguous"):
        sim.run(torch.cat([xt, xt], dim=-1)[..., ::2])
    with pytest.raises(ValueError, match="could not be exported through DLPack"):
        sim.run(xt.clone().requires_grad_())
