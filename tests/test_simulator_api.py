"""The Simulator's contract: parameters, inputs, batching, threads, determinism."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn


@pytest.fixture(scope="module")
def conv_case():
    return netgen.make("depthwise_maxpool", n=20)


def test_build_info_names_the_build():
    info = tn.build_info()
    assert info["version"] == tn.__version__
    assert isinstance(info["openmp"], bool) and info["threads"] >= 1
    assert isinstance(info["cuda"], bool)
    if not info["cuda_available"]:
        assert info["cuda_status"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(duration=0), "duration must be > 0"),
    (dict(duration=float("nan")), "duration must be finite"),
    (dict(duration=10, dt=-1), "dt must be > 0"),
    (dict(duration=1, dt=2), "gives 0 time steps"),
    (dict(duration=1e9), "at most"),
    (dict(duration=10, v_thresh=0), "v_thresh must be > 0"),
    (dict(duration=10, tau_refrac=-1), "tau_refrac must be >= 0"),
    (dict(duration=10, backend="tpu"), "backend must be one of"),
    (dict(duration=10, batch_size=0), "batch_size must be a positive integer"),
    (dict(duration=10, seed=-1), "seed must be an integer"),
    (dict(duration=10, ops_convention="approx"), "ops_convention must be one of"),
    (dict(duration=10, leak="yes"), "leak must be true or false"),
    (dict(duration=10, num_threads=0), "num_threads must be a positive integer"),
    (dict(duration=10, cuda_memory_limit=0), "cuda_memory_limit must be a positive number of bytes"),
    (dict(duration=10, cuda_memory_limit=1.5e9), "cuda_memory_limit must be a positive number of bytes"),
])
def test_bad_parameters_are_named(conv_case, kwargs, message):
    model = conv_case[0]
    with pytest.raises(ValueError, match=message):
        tn.Simulator(model, **kwargs)


def test_steps_follow_snn_toolbox(conv_case):
    sim = tn.Simulator(conv_case[0], duration=10, dt=0.3, backend="cpu")
    assert sim.steps == int(10 / 0.3)
    assert sim.run(conv_case[1][:2]).counts.shape[2] == sim.steps


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_bad_inputs_are_named(conv_case, backend):
    model, x, labels = conv_case
    sim = tn.Simulator(model, duration=5, backend=backend)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        sim.run(bad)
    with pytest.raises(ValueError, match="add a batch axis"):
        sim.run(x[0])
    with pytest.raises(ValueError, match=r"expected \(N, 9, 9, 3\)"):
        sim.run(x[:, :8])
    with pytest.raises(ValueError, match="unsupported dtype"):
        sim.run(np.array([["a"]]))
    with pytest.raises(ValueError, match="no samples"):
        sim.run(x[:0])
    with pytest.raises(ValueError, match="labels have shape"):
        sim.run(x, labels[:3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        sim.run(x, labels + 10)
    with pytest.raises(ValueError, match="integer class indices"):
        sim.run(x, labels + 0.5)


def test_accepts_any_numeric_layout(conv_case):
    model, x, _ = conv_case
    sim = tn.Simulator(model, duration=20, backend="cpu")
    expected = sim.run(x).counts
    fortran = np.asfortranarray(x.astype(np.float64))
    readonly = x.copy()
    readonly.setflags(write=False)
    holder = np.zeros((2 * len(x),) + x.shape[1:], np.float32)
    holder[::2] = x
    strided = holder[::2]
    for variant in (fortran, readonly, strided):
        np.testing.assert_array_equal(sim.run(variant).counts, expected)


def test_results_do_not_depend_on_batch_size_or_threads(conv_case):
    model, x, labels = conv_case
    base = tn.Simulator(model, duration=30, backend="cpu", batch_size=len(x), num_threads=1).run(x, labels)
    for batch_size, threads in [(1, 2), (3, 1), (7, 2)]:
        other = tn.Simulator(model, duration=30, backend="cpu", batch_size=batch_size,
                             num_threads=threads).run(x, labels)
        np.testing.assert_array_equal(other.counts, base.counts)
        np.testing.assert_array_equal(other.synops_t, base.synops_t)
        for name in base.first_spike_times:
            np.testing.assert_array_equal(other.first_spike_times[name], base.first_spike_times[name])


def test_a_sample_does_not_depend_on_its_batch_mates(conv_case):
    model, x, _ = conv_case
    sim = tn.Simulator(model, duration=30, backend="reference", batch_size=len(x))
    together = sim.run(x)
    silent = np.zeros_like(x)
    silent[0] = x[0]
    alone = sim.run(silent[:1])
    for name in together.first_spike_times:
        np.testing.assert_array_equal(alone.first_spike_times[name][0], together.first_spike_times[name][0])


def test_repeated_runs_are_bit_identical(conv_case):
    model, x, _ = conv_case
    sim = tn.Simulator(model, duration=30, backend="cpu")
    a, b = sim.run(x), sim.run(x)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.synops_t, b.synops_t)


def test_softmax_stream_is_shared_and_indexed_by_global_sample():
    model, x, _ = netgen.make("softmax_output", n=12)
    kwargs = dict(duration=20, seed=2 ** 40 + 7)
    ref = tn.Simulator(model, backend="reference", **kwargs).run(x)
    cpu = tn.Simulator(model, backend="cpu", batch_size=5, **kwargs).run(x)
    np.testing.assert_array_equal(cpu.counts, ref.counts)
    # the stream is keyed by the seed: another seed gives other spikes
    other = tn.Simulator(model, backend="cpu", duration=20, seed=1).run(x)
    assert not np.array_equal(other.counts, cpu.counts)
    # sample i uses counter sample=i: simulating samples 4.. alone differs from the run above
    tail = tn.Simulator(model, backend="cpu", **kwargs).run(x[4:])
    assert not np.array_equal(tail.counts, cpu.counts[4:])


def test_philox_known_answers_numpy_and_native():
    from ttfs_native import _core
    from ttfs_native.simulation.philox import philox4x32, softmax_uniforms
    # Random123 known-answer vectors for philox4x32-10
    assert [int(w) for w in philox4x32((0, 0, 0, 0), (0, 0))] == \
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    assert [int(w) for w in philox4x32((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344),
                                       (0xa4093822, 0x299f31d0))] == \
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    u = softmax_uniforms(12345678901, 7, [0, 3, 99], 5)
    for row, sample in enumerate([0, 3, 99]):
        for neuron in range(7):
            assert _core.softmax_uniform(12345678901, neuron, sample, 5) == u[row, neuron]


def test_result_summaries(conv_case):
    model, x, labels = conv_case
    r = tn.Simulator(model, duration=30, backend="cpu").run(x, labels)
    assert r.accuracy == pytest.approx(r.accuracy_t[-1])
    assert 0 < r.spikes_per_neuron <= 1
    assert r.synops_per_sample > 0 and r.ann_ops > 0
    assert 1 <= r.mean_latency_steps <= 30
    assert "SNN accuracy" in r.summary()


@pytest.mark.parametrize("backend", ["reference"] + netgen.NATIVE_BACKENDS)
def test_spike_times_can_be_left_out(conv_case, backend):
    model, x, labels = conv_case
    full = tn.Simulator(model, duration=30, backend=backend).run(x, labels)
    lean = tn.Simulator(model, duration=30, backend=backend, record_spike_times=False).run(x, labels)
    assert lean.first_spike_times == {}
    np.testing.assert_array_equal(lean.counts, full.counts)
    np.testing.assert_array_equal(lean.synops_t, full.synops_t)
    assert lean.spikes_per_neuron == full.spikes_per_neuron


def test_more_threads_than_samples(conv_case):
    model, x, _ = conv_case
    one = tn.Simulator(model, duration=30, backend="cpu", num_threads=1).run(x[:1])
    many = tn.Simulator(model, duration=30, backend="cpu", num_threads=8).run(x[:1])
    np.testing.assert_array_equal(many.counts, one.counts)


def _wide_dense_case():
    """A Dense layer of 600 units after a conv layer: threads split its scatter's runs."""
    layers = [netgen.conv_layer("c1", 8, 3, padding="same"),
              {"name": "flat", "type": "Flatten"},
              {"name": "wide", "type": "Dense", "units": 600},
              {"name": "out", "type": "Dense", "units": 10}]
    x = np.random.default_rng(3).random((3, 8, 8, 2), dtype=np.float32)
    return netgen.normalised_model((8, 8, 2), layers, x), x


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES) + ["wide_dense"])
def test_threads_sharing_a_sample_change_nothing(arch, threads, monkeypatch):
    """With fewer samples than threads, the threads share each sample's layers: the
    scatter split by output range, the neuron pass by blocks of neurons. Every sum
    still takes its terms in the same order, so the results are the one thread's bit
    for bit. cpu_share='all' shares every layer of more than 256 neurons (by
    default only large ones are worth a fork and join)."""
    if arch == "wide_dense":
        model, x = _wide_dense_case()
    else:
        model, x, _ = netgen.make(arch, n=3)
    kwargs = dict(duration=30, backend="cpu", batch_size=1)
    want = tn.Simulator(model, num_threads=1, **kwargs).run(x)
    share_all = tn.simulation.EngineOptions(cpu_share="all")
    netgen.assert_identical(tn.Simulator(model, num_threads=threads, options=share_all, **kwargs).run(x), want)


def test_threads_share_the_large_layers_of_one_sample():
    """By default: a layer of 36,864 neurons is shared by the threads of a batch of one."""
    layers = [netgen.conv_layer("c1", 16, 3, padding="same"),
              netgen.conv_layer("c2", 16, 3, padding="same"),
              {"name": "pool", "type": "AveragePooling2D", "pool_size": 4},
              {"name": "flat", "type": "Flatten"},
              {"name": "out", "type": "Dense", "units": 10}]
    x = np.random.default_rng(5).random((2, 48, 48, 2), dtype=np.float32)
    model = netgen.normalised_model((48, 48, 2), layers, x)
    want = tn.Simulator(model, duration=20, backend="cpu", num_threads=1).run(x)
    got = tn.Simulator(model, duration=20, backend="cpu", num_threads=3, batch_size=1).run(x)
    netgen.assert_identical(got, want)
    assert want.spike_counts["c2"].sum() > 0


def test_bad_share_policy_is_refused(conv_case, monkeypatch):
    model, x, _ = conv_case
    with pytest.raises(ValueError, match=r"cpu_share must be one of \['auto', 'all'\], got 'most'"):
        tn.Simulator(model, duration=10, backend="cpu", options=tn.simulation.EngineOptions(cpu_share="most"))
    monkeypatch.setenv("TTFS_CPU_SHARE", "most")
    with pytest.raises(ValueError, match=r"environment variable TTFS_CPU_SHARE \(the default of cpu_share\) "
                                         r"must be one of \['auto', 'all'\], got 'most'"):
        tn.Simulator(model, duration=10, backend="cpu", num_threads=2)


def test_default_threads_follow_omp_num_threads_or_the_cpus(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert tn.simulation.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert tn.simulation.default_threads() >= 1


def test_default_threads_ignore_torch_changing_the_shared_openmp_default(conv_case, monkeypatch):
    torch = pytest.importorskip("torch")
    model, x, _ = conv_case
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = tn.simulation.default_threads()
    assert tn.Simulator(model, duration=30, backend="cpu").num_threads == cpus
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP's default for the whole process, ours included
    try:
        assert tn.Simulator(model, duration=30, backend="cpu").num_threads == cpus
        assert tn.build_info()["threads"] == cpus
    finally:
        torch.set_num_threads(old)
