"""``ttfs-native convert --labels``: one command from a trained ANN to a calibrated folder; the MNIST demo."""
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.conversion.normalise import ActivationStats, normalise
from ttfs_native.datasets import bundled_model, bundled_test_set
from ttfs_native.model.ann import ann_predictions

from test_convert_cli import _tiny_onnx

onnx = pytest.importorskip("onnx", reason="the convert tests build an ONNX file (pip install onnx)")

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("TTFS_MNIST", ROOT.parent / "shared" / "datasets" / "mnist.npz"))
# small grid: the tests check the workflow, bench/accuracy.py the accuracy of the full search
FAST = ["--max-steps", "32"]


@pytest.fixture
def files(tmp_path):
    net = _tiny_onnx(tmp_path / "net.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (60, 6, 6, 1)).astype(np.float32)
    y = ann_predictions(tn.from_onnx(net), x)      # labels the ANN gets right: a reachable target
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return net, tmp_path / "x.npy", tmp_path / "y.npy", x, y


def test_convert_with_labels_writes_a_calibrated_folder_that_simulates_without_flags(files, tmp_path, capsys):
    net, xf, yf, x, y = files
    out = tmp_path / "snn"
    assert main(["convert", str(net), "--calibration", str(xf), "--labels", str(yf), "--out", str(out)] + FAST) == 0
    text = capsys.readouterr().out
    assert "held-out part" in text and f"model folder written to {out}" in text
    model = tn.load_model(out)
    assert model.simulation["coding"] == "ttfs-dyn-thresh"
    assert int(model.simulation["duration"] / model.simulation["dt"]) == 32
    record = model.metadata["calibration"]
    assert record["calibration_samples"] == 60 and record["held_out_samples"] == 18
    assert model.output_layer.activation == "relu"      # the softmax output was replaced
    assert np.mean(ann_predictions(model, x) == y) > 0.95
    assert main(["simulate", str(out), "--input", str(xf), "--labels", str(yf), "--backend", "cpu"]) == 0
    assert "steps 32" in capsys.readouterr().out
    # the Python API gives the same folder
    same = tn.convert(net, x, y, max_steps=32)
    assert same.simulation == model.simulation
    assert same.metadata["calibration"]["layer_threshold_scales"] == record["layer_threshold_scales"]


def test_convert_without_labels_stays_the_plain_conversion(files, tmp_path, capsys):
    net, xf, _, x, _ = files
    out = tmp_path / "plain"
    assert main(["convert", str(net), "--calibration", str(xf), "--out", str(out)]) == 0
    assert "no simulation settings stored" in capsys.readouterr().out
    model = tn.load_model(out)
    assert model.simulation == {} and "calibration" not in model.metadata
    assert model.metadata["normalisation"]["percentile"] == 99.9


def _bad(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return str(tmp_path / name)


@pytest.mark.parametrize("case, message", [
    ("short labels", "labels have shape (59,), expected (60,)"),
    ("string labels", "labels must be integer class indices, got dtype <U1"),
    ("fractional labels", "labels must be integer class indices"),
    ("labels out of range", "labels must lie in [0, 3)"),
    ("wrong shape", "calibration input has shape (60, 6, 6), expected (N, 6, 6, 1)"),
    ("channels first", "looks channels-first"),
    ("non-finite", "calibration input contains NaN or Inf"),
    ("no output spike", "the ANN's output is never positive"),
    ("out is a file", "is a file; give a folder"),
    ("out is not a model", "non-empty folder that holds no model"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, tmp_path, capsys, case, message):
    net, xf, yf, x, y = files
    out = tmp_path / "out"
    args = {"calibration": str(xf), "labels": str(yf)}
    if case == "short labels":
        args["labels"] = _bad(tmp_path, "y.npy", y[:-1])
    elif case == "string labels":
        args["labels"] = _bad(tmp_path, "y.npy", np.array(["a"] * 60))
    elif case == "fractional labels":
        args["labels"] = _bad(tmp_path, "y.npy", y + 0.5)
    elif case == "labels out of range":
        args["labels"] = _bad(tmp_path, "y.npy", y + 3)
    elif case == "wrong shape":
        args["calibration"] = _bad(tmp_path, "x.npy", x[..., 0])
    elif case == "channels first":
        args["calibration"] = _bad(tmp_path, "x.npy", np.zeros((60, 1, 6, 6), np.float32))
    elif case == "non-finite":
        bad = x.copy()
        bad[3, 2, 2, 0] = np.nan
        args["calibration"] = _bad(tmp_path, "x.npy", bad)
    elif case == "no output spike":      # the same net with an output bias no input can overcome
        from onnx import numpy_helper
        graph = onnx.load(str(net))
        b2 = next(t for t in graph.graph.initializer if t.name == "b2")
        b2.CopyFrom(numpy_helper.from_array(np.full(3, -100, np.float32), "b2"))
        net = tmp_path / "dead.onnx"
        onnx.save(graph, str(net))
    elif case == "out is a file":
        out.write_text("x")
    elif case == "out is not a model":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["convert", str(net), "--calibration", args["calibration"], "--labels", args["labels"],
                 "--out", str(out)] + FAST)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before      # nothing written


def test_per_channel_normalisation_keeps_the_ann_and_scales_each_channel():
    ann = bundled_model(plain=True)
    x, _ = bundled_test_set()
    stats = ActivationStats(ann, x)
    model = normalise(ann, x, 99.9, per_channel=True, stats=stats)
    assert np.array_equal(ann_predictions(model, x), ann_predictions(ann, x))
    factors = model.metadata["normalisation"]["scale_factors"]
    conv = ann.layers[0]
    assert isinstance(factors[conv.name], list) and len(factors[conv.name]) == conv.output_shape[-1]
    assert isinstance(factors[ann.output_layer.name], float)          # the output keeps one lambda
    acts = model.ann_forward(x, return_all=True)[conv.name].reshape(-1, conv.output_shape[-1])
    for c in range(acts.shape[1]):
        positive = acts[:, c][acts[:, c] > 0]
        if positive.size:
            assert np.percentile(positive, 99.9) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="another model"):
        normalise(bundled_model(plain=True), x, stats=stats)


def test_mnist_demo_bundle_is_small_and_attributed():
    data = resources.files("ttfs_native").joinpath("data")
    files = [data / "mnist_test.npz"] + [data / d / f for d in ("mnist_lenet5", "mnist_lenet5_plain")
                                         for f in ("model.json", "weights.npz")]
    assert sum(len(f.read_bytes()) for f in files) < 2_000_000
    readme = (data / "README.md").read_text()
    assert "MNIST" in readme and "LeCun" in readme and "CC BY-SA 3.0" in readme
    x, y = bundled_test_set("mnist")
    assert x.shape == (2000, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (2000,) and set(np.unique(y)) == set(range(10))
    assert bundled_model(dataset="mnist").simulation["coding"] == "ttfs-dyn-thresh"


def test_mnist_demo_command(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["demo", "--dataset", "mnist", "--num-samples", "200", "--backend", "cpu", "--no-progress",
                 "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MNIST LeNet-5, 200 test samples, 64 steps" in out
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    ann, snn = (float(v) for v in lines["accuracy"].split()[1:3])
    assert ann >= 0.97 and snn >= ann - 0.03
    assert list(tmp_path.glob("*.png"))


@pytest.mark.skipif(not MNIST.is_file(), reason=f"MNIST not found at {MNIST} (set TTFS_MNIST)")
def test_calibration_on_mnist_keeps_the_ann_accuracy_on_test_images():
    """Quick version of bench/accuracy.py: the bundled LeNet's ANN calibrated on 300 validation images with a
    small grid, judged on 1000 test images it never saw."""
    from ttfs_native.conversion import calibrate
    d = np.load(MNIST)
    x_val = d["x_train"][-5000:][:300, :, :, None].astype(np.float32) / 255
    y_val = d["y_train"][-5000:][:300].astype(np.int64)
    x_test = d["x_test"][-1000:, :, :, None].astype(np.float32) / 255   # not the bundled test images
    y_test = d["y_test"][-1000:].astype(np.int64)
    ann = bundled_model(plain=True, dataset="mnist")
    result = calibrate(ann, x_val, y_val, max_steps=64, percentiles=(99.9,), v_thresh=(1.5, 2.0), dts=(0.5,),
                       fold_pooling=(False,), per_channel=(True,), layer_factors=(0.7071, 1.414), backend="cpu")
    ann_acc = np.mean(ann_predictions(ann, x_test) == y_test)
    plain = tn.Simulator(ann, duration=64, backend="cpu").run(x_test, y_test).accuracy
    snn = tn.Simulator.for_model(result.model, backend="cpu").run(x_test, y_test).accuracy
    assert snn >= ann_acc - 0.015, (ann_acc, plain, snn)
    assert snn > plain
