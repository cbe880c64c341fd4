"""The engines behind one interface, their explicit options, and the typed
hand-off of the network (NodeKind, Geometry) to the compiled core."""
import subprocess
import sys

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native import _core
from ttfs_native.simulation import EngineOptions
from ttfs_native.simulation.options import ENVIRONMENT


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("option, value, message", [
    ("cpu_kernels", "bogus", r"cpu_kernels must be one of \['auto', 'avx2', 'generic'\], got 'bogus'"),
    ("cpu_share", "most", r"cpu_share must be one of \['auto', 'all'\], got 'most'"),
    ("cpu_sums", "float16", r"cpu_sums must be one of \['float64', 'float32'\], got 'float16'"),
    ("cuda_schedule", "layers", r"cuda_schedule must be one of \['step', 'layer'\], got 'layers'"),
    ("cuda_synapses", "gathered", r"cuda_synapses must be one of \['events', 'gather'\], got 'gathered'"),
    ("cuda_window", 0, r"cuda_window must be None or a number of steps from 1 to 1024, got 0"),
    ("cuda_window", 1025, r"cuda_window must be None or a number of steps from 1 to 1024, got 1025"),
    ("cuda_window", 2.0, r"cuda_window must be None or a number of steps from 1 to 1024, got 2.0"),
    ("cuda_profile", "yes", r"cuda_profile must be True or False, got 'yes'"),
    ("cuda_memory_limit", -5, r"cuda_memory_limit must be a positive number of bytes or None, got -5"),
    ("cuda_memory_limit", True, r"cuda_memory_limit must be a positive number of bytes or None, got True"),
])
def test_bad_option_values_are_refused(option, value, message):
    with pytest.raises(ValueError, match=message):
        EngineOptions(**{option: value})


@pytest.mark.parametrize("option, variable, text", [
    ("cpu_kernels", "TTFS_CPU_KERNELS", "bogus"),
    ("cpu_share", "TTFS_CPU_SHARE", "most"),
    ("cpu_sums", "TTFS_CPU_SUMS", "double"),
    ("cuda_schedule", "TTFS_CUDA_SCHEDULE", "layers"),
    ("cuda_synapses", "TTFS_CUDA_SYNAPSES", "gathered"),
    ("cuda_window", "TTFS_CUDA_WINDOW", "ten"),
    ("cuda_window", "TTFS_CUDA_WINDOW", "2000"),
    ("cuda_profile", "TTFS_CUDA_PROFILE", "yes"),
])
def test_bad_environment_defaults_are_refused(monkeypatch, option, variable, text):
    """The environment variables are defaults of the options, checked the same way:
    a bogus value is an error naming the variable, not silently ignored."""
    monkeypatch.setenv(variable, text)
    with pytest.raises(ValueError, match=f"environment variable {variable} \\(the default of {option}\\)"):
        EngineOptions()
    model, _, _ = netgen.make("mlp", n=1)
    with pytest.raises(ValueError, match=variable):
        tn.Simulator(model, duration=4, backend="cpu")
    # an explicit option takes precedence over its environment default
    good = {"cpu_kernels": "generic", "cpu_share": "all", "cpu_sums": "float32", "cuda_schedule": "layer",
            "cuda_synapses": "gather",
            "cuda_window": 3, "cuda_profile": False}[option]
    assert getattr(EngineOptions(**{option: good}), option) == good


def test_environment_defaults_and_built_in_defaults(monkeypatch):
    for variable in ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    assert EngineOptions().as_dict() == dict(cpu_share="auto", cpu_kernels="auto", cpu_sums="float64",
                                             cuda_schedule="step",
                                             cuda_synapses="events", cuda_window=None, cuda_profile=False,
                                             cuda_memory_limit=None)
    monkeypatch.setenv("TTFS_CPU_KERNELS", "generic")
    monkeypatch.setenv("TTFS_CUDA_WINDOW", "12")
    monkeypatch.setenv("TTFS_CUDA_PROFILE", "1")
    monkeypatch.setenv("TTFS_CUDA_SCHEDULE", "layer")
    o = EngineOptions()
    assert (o.cpu_kernels, o.cuda_window, o.cuda_profile, o.cuda_schedule) == ("generic", 12, True, "layer")


def test_build_info_reports_the_options_in_effect(monkeypatch):
    monkeypatch.setenv("TTFS_CUDA_SCHEDULE", "layer")
    monkeypatch.setenv("TTFS_CPU_KERNELS", "generic")
    info = tn.build_info()
    assert info["engine_options"]["cuda_schedule"] == "layer"
    assert info["engine_options"]["cpu_kernels"] == "generic"
    assert info["cpu_kernels"] == "generic"  # what the CPU engine runs with these options
    monkeypatch.setenv("TTFS_CPU_KERNELS", "bogus")
    with pytest.raises(ValueError, match="TTFS_CPU_KERNELS"):
        tn.build_info()


def test_info_command_shows_the_options(monkeypatch):
    env = {"TTFS_CUDA_WINDOW": "7", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "ttfs_native", "info"], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "engine_options:" in done.stdout and "'cuda_window': 7" in done.stdout


def test_options_reach_the_engine():
    model, x, _ = netgen.make("conv_strides_dilation", n=3)
    sim = tn.Simulator(model, duration=10, backend="cpu", num_threads=2,
                       options=EngineOptions(cpu_kernels="generic", cpu_share="all", cpu_sums="float32"))
    o = sim._engine.options
    assert o.cpu_kernels == _core.CpuKernels.generic and o.cpu_share == _core.CpuShare.all
    assert o.cpu_sums == _core.CpuSums.float32
    assert o.cpu_threads == 2
    assert sim._engine.kernels == "generic"
    # the shorthand and the option are the same thing
    a = tn.Simulator(model, duration=10, backend="cpu", cuda_memory_limit=1 << 20)
    assert a.options.cuda_memory_limit == 1 << 20 and a._engine.options.cuda_memory_limit == 1 << 20
    b = tn.Simulator(model, duration=10, backend="cpu", options=EngineOptions(cuda_memory_limit=1 << 20))
    assert b.options == a.options
    with pytest.raises(TypeError, match="options must be an EngineOptions"):
        tn.Simulator(model, duration=10, backend="cpu", options={"cpu_share": "all"})


# ------------------------------------------------------------------ one interface
def _results(model, n, steps):
    spiking = model.spiking_layers
    return _core.Results(counts=np.zeros((n, model.num_classes, steps), np.int32),
                         first_spike=[np.zeros((n, s.size), np.float32) for s in spiking],
                         spike_counts=np.zeros((n, len(spiking)), np.int64),
                         synops=np.zeros((n, steps), np.float64), stop_step=np.zeros(n, np.int32))


@pytest.mark.parametrize("arch", ["depthwise_maxpool", "softmax_output"])
def test_every_engine_answers_run_inputs_results(arch):
    """The reference and the CPU engine take the same Input and Results and write
    the rows of the input's samples (sample_offset: their index in the whole input)."""
    model, x, _ = netgen.make(arch, n=5)
    outputs = []
    for backend in ("reference", "cpu"):
        engine = tn.Simulator(model, duration=12, backend=backend, seed=3)._engine
        results = _results(model, 5, 12)
        inputs = _core.Input(x)
        engine.run(inputs.rows(3, 5), results)   # any order, any split
        engine.run(inputs.rows(0, 3), results)
        outputs.append(results)
    want = tn.Simulator(model, duration=12, backend="cpu", seed=3).run(x)
    for results in outputs:
        np.testing.assert_array_equal(results.counts, want.counts)
        np.testing.assert_array_equal(results.synops, want.synops_t)
        for a, s in zip(results.first_spike, model.spiking_layers):
            np.testing.assert_array_equal(a.reshape((5,) + s.output_shape), want.first_spike_times[s.name])


def test_input_and_results_are_checked():
    model, x, _ = netgen.make("mlp", n=4)
    engine = tn.Simulator(model, duration=6, backend="cpu")._engine
    with pytest.raises(ValueError, match=r"Input.rows: \[2, 9\) is not within the 4 samples"):
        _core.Input(x).rows(2, 9)
    with pytest.raises(ValueError, match="values per sample, the network takes"):
        engine.run(_core.Input(x[:, :1]), _results(model, 4, 6))
    with pytest.raises(ValueError, match="do not fit the 3 rows of the results"):
        engine.run(_core.Input(x, sample_offset=1), _results(model, 3, 6))
    with pytest.raises(ValueError, match="Results.counts: wrong shape"):
        engine.run(_core.Input(x), _results(model, 4, 7))
    with pytest.raises(TypeError):  # written in place: never a converted copy
        _core.Results(counts=np.zeros((4, 3, 6)), first_spike=[], spike_counts=np.zeros((4, 2), np.int64),
                      synops=np.zeros((4, 6)), stop_step=np.zeros(4, np.int32))


# ------------------------------------------------------------------ typed hand-off
def test_geometry_and_node_kinds_are_typed():
    g = _core.Geometry(in_h=5, in_w=5, in_c=2, out_h=3, out_w=3, out_c=4, kernel_h=3, kernel_w=3, multiplier=4)
    assert (g.kernel_h, g.stride_w, g.pad_top, g.multiplier) == (3, 1, 0, 4)
    assert "kernel_w=3" in repr(g)
    with pytest.raises(TypeError):
        _core.Geometry(5, 5)  # named fields only
    net = _core.Network()
    with pytest.raises(TypeError):  # a kind is a NodeKind, not an integer
        net.add_node(0, "input", [], _core.Geometry(), 1, False, *[np.zeros(0, np.float32)] * 3,
                     np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    assert [k.name for k in _core.NodeKind.__members__.values()] == [
        "Input", "Dense", "Conv2D", "DepthwiseConv2D", "AveragePooling2D", "MaxPooling2D", "Gather", "Add"]


def test_fanouts_must_be_whole_numbers():
    """Synaptic operations are sums of fan-outs in any order on the GPU: exact only
    for whole numbers, so the hand-off refuses others."""
    from ttfs_native.simulation.plan import build_network
    model, _, _ = netgen.make("mlp", n=1)
    sim = tn.Simulator(model, duration=4, backend="cpu")
    fanouts = dict(sim.fanouts)
    name = model.spiking_layers[0].name
    fanouts[name] = fanouts[name] + 0.5
    with pytest.raises(ValueError, match=f"node '{name}': fan-outs must be non-negative whole numbers"):
        build_network(_core, model, fanouts)
