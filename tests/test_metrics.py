"""Operation counts with units, sparsity, parameters and energy (docs/METRICS.md)."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.simulation.metrics import ENERGY_TABLES


@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES))
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_layer_accumulates_add_up_to_the_synaptic_operations(arch, backend):
    model, x, _ = netgen.make(arch, n=8)
    r = tn.Simulator(model, duration=12, backend=backend).run(x)
    total = sum(r.layer_acs.values())
    np.testing.assert_allclose(total, r.synops_t.sum(axis=1))
    m = r.metrics()
    assert m.acs == pytest.approx(r.synops_per_sample)
    assert sum(layer.acs for layer in m.layers) == pytest.approx(m.acs)


def test_counts_of_a_dense_net_by_hand():
    """Flatten -> Dense(5) -> Dense(3): MACs of the ANN and of the analog input, parameters."""
    layers = [{"name": "flat", "type": "Flatten"}, {"name": "d1", "type": "Dense", "units": 5},
              {"name": "out", "type": "Dense", "units": 3}]
    rng = np.random.default_rng(0)
    x = rng.random((6, 2, 2, 1), dtype=np.float32)
    x[0, 0, 0, 0] = 0.0   # a zero input costs no MAC
    model = netgen.normalised_model((2, 2, 1), layers, x)
    r = tn.Simulator(model, duration=10, backend="cpu").run(x)
    assert r.ann_macs == 4 * 5 + 5 * 3
    np.testing.assert_array_equal(r.input_macs, (x.reshape(6, -1) != 0).sum(axis=1) * 5.0)
    assert r.parameters == 4 * 5 + 5 + 5 * 3 + 3
    m = r.metrics()
    assert m.parameter_bytes == 4 * r.parameters
    spikes = sum(float(c.sum()) for c in r.spike_counts.values())
    assert m.activation_sparsity == pytest.approx(1 - spikes / (8 * 10 * 6))
    e = m.energy("45nm-fp32")
    assert e["snn"] == pytest.approx(m.acs * 0.9e-12 + m.macs * 4.6e-12)
    assert e["ann"] == pytest.approx(35 * 4.6e-12)


def test_sparsity_counts_only_the_steps_simulated():
    model, x, _ = netgen.make("mlp", n=8)
    full = tn.Simulator(model, duration=40, backend="cpu").run(x)
    stopped = tn.Simulator(model, duration=40, backend="cpu", early_stop=True).run(x)
    assert stopped.stop_step.sum() < full.stop_step.sum()
    spikes = sum(float(c.sum()) for c in stopped.spike_counts.values())
    neurons = sum(stopped.neurons.values())
    assert stopped.metrics().activation_sparsity == pytest.approx(1 - spikes / (neurons * stopped.stop_step.sum()))


def test_ann_macs_compare_with_the_ann_as_trained():
    """Folding pooling enlarges the ANN the SNN mirrors; the MACs stay those of the trained ANN."""
    from ttfs_native.datasets import bundled_model
    from ttfs_native.model.connectivity import exact_fanins
    plain = bundled_model(plain=True)
    folded = bundled_model()
    assert folded.metadata.get("folded_average_pooling")
    trained = sum(exact_fanins(tn.model.transforms.ann_view(plain)).values())
    r = tn.Simulator(folded, duration=4, backend="cpu").run(np.zeros((1,) + folded.input_shape, np.float32))
    assert r.ann_macs == trained


def test_unknown_energy_table_is_an_error():
    model, x, _ = netgen.make("mlp", n=2)
    r = tn.Simulator(model, duration=4, backend="cpu").run(x)
    with pytest.raises(ValueError, match="energy table"):
        r.metrics().energy("7nm-magic")


def test_cli_prints_units_and_energy(golden_case, tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main(["simulate", str(golden_case / "model"), "--input", str(golden_case / "x.npy"),
                 "--duration", "8", "--energy", "45nm-int8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for unit in (" AC", " MAC", "nJ", "KiB", "sparsity", "Horowitz", ENERGY_TABLES["45nm-int8"]["what"]):
        assert unit in text, unit
    saved = np.load(out)
    assert "input_macs" in saved.files and any(k.startswith("acs/") for k in saved.files)
