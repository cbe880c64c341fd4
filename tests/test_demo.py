"""The bundled model, ``ttfs-native demo`` and ``ttfs-native calibrate``."""
import io
from importlib import resources

import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.conversion.calibrate import Setting, calibrate
from ttfs_native.model.transforms import apply_layer_scales
from ttfs_native.cli import main
from ttfs_native.datasets import bundled_calibration_set, bundled_model, bundled_test_set
from ttfs_native.demo import run_demo
from ttfs_native.progress import Progress


def test_bundled_files_are_small_and_well_formed():
    data = resources.files("ttfs_native").joinpath("data")
    files = [data / "digits_cnn" / "model.json", data / "digits_cnn" / "weights.npz",
             data / "digits_test.npz", data / "digits_calibration.npz"]
    assert sum(len(f.read_bytes()) for f in files) < 300_000
    for x, y, n in (bundled_test_set() + (360,), bundled_calibration_set() + (287,)):
        assert x.shape == (n, 8, 8, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert y.shape == (n,) and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    model = bundled_model()
    assert model.input_shape == (8, 8, 1) and model.num_classes == 10
    assert "normalisation" in model.metadata and "calibration" in model.metadata


def test_demo_on_a_subset_is_plausible():
    report = run_demo(num_samples=20, backend="cpu")
    assert 0 <= report.ann_accuracy <= 1 and 0 <= report.snn_accuracy <= 1
    assert report.snn_accuracy > 0.5
    assert report.num_samples == 20 and report.backend == "cpu"
    assert report.steps <= 64
    assert report.settings == bundled_model().simulation
    assert 0 < report.mean_latency_steps <= report.steps
    assert report.synops_per_sample > 0 and report.ann_ops > 0
    assert report.samples_per_second > 0
    assert "SNN" in report.table()


def test_plain_demo_uses_the_toolbox_settings():
    report = run_demo(num_samples=8, backend="cpu", plain=True)
    assert report.settings == {"coding": "ttfs-dyn-thresh", "duration": 64.0, "dt": 1.0, "v_thresh": 1.0,
                               "leak": False}


def test_demo_command_prints_the_table(capsys):
    assert main(["demo", "--num-samples", "10", "--backend", "cpu", "--no-progress", "--duration", "32"]) == 0
    out = capsys.readouterr().out
    for row in ("accuracy", "latency", "spikes per neuron", "operations", "wall time", "samples per second"):
        assert row in out


def test_demo_rejects_bad_arguments(capsys):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        run_demo(num_samples=0)
    assert main(["demo", "--num-samples", "4", "--backend", "cpu", "--v-thresh", "-1"]) == 2
    assert "v_thresh must be > 0" in capsys.readouterr().err


def test_progress_appears_only_for_slow_runs():
    quiet = io.StringIO()
    progress = Progress(delay=60, stream=quiet)
    progress(1, 2), progress(2, 2)
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    progress = Progress(delay=0, stream=shown)
    progress(1, 2), progress(2, 2)
    assert "2/2" in shown.getvalue()


def test_layer_threshold_scale_equals_weight_scale():
    """Scaling a layer's threshold by k == dividing its kernel and bias by k (one v_thresh for all)."""
    model = bundled_model()
    x = bundled_test_set()[0][:10]
    name = [s.name for s in model.layers if s.is_weighted][0]
    scaled = apply_layer_scales(model, {name: 2.0})
    np.testing.assert_allclose(scaled.weights[name]["kernel"] * 2, model.weights[name]["kernel"], rtol=1e-6)
    a = tn.Simulator(scaled, duration=16, backend="cpu").run(x)
    assert a.counts.shape == (10, 10, 16)
    with pytest.raises(ValueError, match="unknown or weightless"):
        apply_layer_scales(model, {"nope": 2.0})


def test_calibrate_searches_and_returns_a_consistent_model():
    model = bundled_model()
    x, y = bundled_calibration_set()
    x, y = x[:90], y[:90]
    result = calibrate(model, x, y, max_steps=32, percentiles=(99.9, 100), v_thresh=(1.0,), dts=(1.0,),
                       per_channel=(False,), fold_pooling=(True,), layer_factors=(2.0,), backend="cpu")
    n_fit = result.best.num_samples
    assert n_fit == 63 and result.num_samples == 90 and result.holdout_best.num_samples == 27
    assert result.plain is not None and result.plain.setting == Setting(99.9, 1.0, 1.0, False)
    # every grid point and each layer's x2 reached the whole search part, the chosen one among them
    assert len(result.trials) >= 2 + len([s for s in model.layers if s.is_weighted])
    assert result.best in result.trials
    assert result.holdout_best.setting == result.best.setting
    assert result.holdout_best.score == max(t.score for t in result.holdout)
    assert "@32" in result.table().splitlines()[0]
    kw = result.simulator_kwargs
    assert result.model.simulation == {"coding": "ttfs-dyn-thresh", **kw}
    from ttfs_native.conversion.calibrate import split_calibration
    fit, held = split_calibration(90, 0.3)
    again = tn.Simulator.for_model(result.model, backend="cpu").run(x[fit], y[fit])
    assert again.accuracy == pytest.approx(result.best.accuracy)
    again = tn.Simulator.for_model(result.model, backend="cpu").run(x[held], y[held])
    assert again.accuracy == pytest.approx(result.holdout_best.accuracy)


def test_calibrate_rejects_bad_inputs():
    model = bundled_model()
    x, y = bundled_calibration_set()
    with pytest.raises(ValueError, match="labels have shape"):
        calibrate(model, x[:10], y[:9])
    with pytest.raises(ValueError, match="percentile"):
        calibrate(model, x[:10], y[:10], percentiles=(0,))
    with pytest.raises(ValueError, match="max_steps"):
        calibrate(model, x[:10], y[:10], max_steps=0)
    with pytest.raises(ValueError, match="v_thresh must be a non-empty list"):
        calibrate(model, x[:10], y[:10], v_thresh=())


def test_calibrate_command_on_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "calibrated"
    assert main(["calibrate", "--percentiles", "99.9", "--v-thresh", "1", "--dt", "1",
                 "--layer-factors", "", "--max-steps", "16", "--num-samples", "50", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "finalists on the 15 held-out samples" in text and "duration 16 (16 steps)" in text
    assert tn.load_model(out).simulation["duration"] == 16


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_demo_with_the_window_coding(dataset, capsys):
    from ttfs_native.cli import main
    assert main(["demo", "--coding", "ttfs-window", "--dataset", dataset, "--backend", "reference",
                 "--num-samples", "40", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "coding ttfs-window" in out and "64 steps" in out
    acc = [line for line in out.splitlines() if line.startswith("accuracy")][0].split()
    assert abs(float(acc[1]) - float(acc[2])) <= 0.05    # the window coding keeps the ANN's accuracy
    assert main(["demo", "--coding", "ttfs-window", "--plain"]) == 2
