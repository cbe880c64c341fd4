"""PNG plots of a run (plots.py)."""
import sys

import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.datasets import bundled_model, bundled_test_set
from ttfs_native.plots import write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run():
    model = bundled_model()
    x, y = bundled_test_set()
    x, y = x[:12], y[:12]
    return model, x, y, tn.Simulator(model, duration=32, backend="cpu").run(x, y)


def test_three_pngs_with_labels(run, tmp_path):
    pytest.importorskip("matplotlib")
    model, x, _, result = run
    paths = write_plots(result, model, x, tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["accuracy_vs_step.png", "spike_raster.png",
                                             "spike_time_vs_activation.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000


def test_no_accuracy_plot_without_labels(run, tmp_path):
    pytest.importorskip("matplotlib")
    model, x, _, _ = run
    result = tn.Simulator(model, duration=16, backend="cpu").run(x[:3])
    names = sorted(p.name for p in write_plots(result, model, x[:3], tmp_path))
    assert names == ["spike_raster.png", "spike_time_vs_activation.png"]


def test_mismatched_inputs_are_named(run, tmp_path):
    pytest.importorskip("matplotlib")
    model, x, _, result = run
    with pytest.raises(ValueError, match="x has 5 samples but the result has 12"):
        write_plots(result, model, x[:5], tmp_path)
    with pytest.raises(ValueError, match="sample must lie in"):
        write_plots(result, model, x, tmp_path, sample=12)


def test_missing_matplotlib_names_the_extra(run, tmp_path, monkeypatch):
    model, x, _, result = run
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install ttfs-native\[plot\]"):
        write_plots(result, model, x, tmp_path)


def test_simulate_command_writes_plots(run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from ttfs_native.cli import main
    model, x, y, _ = run
    model.save(tmp_path / "m")
    np.save(tmp_path / "x.npy", x[:4])
    np.save(tmp_path / "y.npy", y[:4])
    assert main(["simulate", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--duration", "16", "--backend", "cpu", "--plot", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.count("plot written to") == 3


def test_window_coding_plots_leave_out_the_read_output_layer(tmp_path):
    """ttfs-window: the output layer's membrane is read, it never fires; its panel would say 'never fired'."""
    from ttfs_native.datasets import bundled_model, bundled_test_set
    from ttfs_native.plots import _spiking_layers, write_plots
    model = bundled_model(coding="ttfs-window")
    x, y = bundled_test_set()
    result = tn.Simulator.for_model(model, backend="cpu").run(x[:8], y[:8])
    names = [s.name for s in _spiking_layers(result, model)]
    assert model.output_layer.name not in names and names
    assert len(write_plots(result, model, x[:8], tmp_path)) == 3
