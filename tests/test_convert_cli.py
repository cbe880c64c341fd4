"""``ttfs-native convert``: ANN file -> normalised model folder, and pooling folding."""
import numpy as np
import pytest

import ttfs_native as tn
from ttfs_native.cli import main
from ttfs_native.model.transforms import fold_average_pooling, softmax_to_relu

from test_normalise import _random_model

onnx = pytest.importorskip("onnx", reason="the convert CLI test builds an ONNX file (pip install onnx)")


def _tiny_onnx(path, seed=0):
    """Conv(4, 3x3, pad 1) - Relu - AveragePool(2) - Flatten - Gemm(3) - Softmax on (1, 6, 6) inputs."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    arrays = {"W1": rng.normal(0, 0.5, (4, 1, 3, 3)), "b1": rng.normal(0.1, 0.1, 4),
              "W2": rng.normal(0, 0.5, (3, 36)), "b2": rng.normal(0, 0.1, 3)}
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("AveragePool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "W2", "b2"], ["g"], name="fc", transB=1),
             helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture
def files(tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (64, 6, 6, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return _tiny_onnx(tmp_path / "net.onnx"), tmp_path / "x.npy", x


def test_convert_writes_a_normalised_model_folder(files, tmp_path, capsys):
    net, xfile, x = files
    out = tmp_path / "snn"
    assert main(["convert", str(net), "--calibration", str(xfile), "--out", str(out)]) == 0
    assert "lambda =" in capsys.readouterr().out
    model = tn.load_model(out)
    ann = tn.from_onnx(net)
    record = model.metadata["normalisation"]
    assert record["percentile"] == 99.9 and record["calibration_samples"] == len(x)
    assert record["scale_factors"]["fc"] == 1.0          # softmax output: toolbox keeps 1
    acts = model.ann_forward(x, return_all=True)
    assert np.percentile(acts["conv"][acts["conv"] > 0], 99.9) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(model.ann_forward(x), ann.ann_forward(x), rtol=1e-4, atol=1e-6)
    tn.Simulator(model, duration=8, backend="cpu").run(x[:4])   # it simulates


def test_softmax_to_relu_and_percentile_options(files, tmp_path):
    net, xfile, x = files
    out = tmp_path / "snn"
    assert main(["convert", str(net), "--calibration", str(xfile), "--percentile", "100",
                 "--softmax-to-relu", "--out", str(out)]) == 0
    model = tn.load_model(out)
    assert model.output_layer.activation == "relu" and model.metadata["softmax_to_relu"] is True
    acts = model.ann_forward(x, return_all=True)
    for name in ("conv", "fc"):
        assert acts[name].max() == pytest.approx(1.0, rel=1e-5)


def test_fold_pooling_option_keeps_the_ann(files, tmp_path):
    net, xfile, x = files
    out = tmp_path / "snn"
    assert main(["convert", str(net), "--calibration", str(xfile), "--fold-pooling", "--out", str(out)]) == 0
    model = tn.load_model(out)
    assert [s.type for s in model.layers] == ["Conv2D", "Flatten", "Dense"]
    np.testing.assert_allclose(model.ann_forward(x), tn.from_onnx(net).ann_forward(x), rtol=1e-4, atol=1e-6)


def test_unknown_extension_is_a_clear_error(files, tmp_path, capsys):
    _, xfile, _ = files
    (tmp_path / "net.pt").write_bytes(b"")
    assert main(["convert", str(tmp_path / "net.pt"), "--calibration", str(xfile), "--out", str(tmp_path / "o")]) == 2
    assert "cannot tell the format of 'net.pt'" in capsys.readouterr().err


def test_channels_first_calibration_is_pointed_out(files, tmp_path, capsys):
    net, _, x = files
    np.save(tmp_path / "xcf.npy", x.transpose(0, 3, 1, 2))
    assert main(["convert", str(net), "--calibration", str(tmp_path / "xcf.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "looks channels-first" in capsys.readouterr().err


def test_missing_files_are_named(files, tmp_path, capsys):
    net, xfile, _ = files
    assert main(["convert", str(net), "--calibration", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "calibration file not found" in capsys.readouterr().err
    out = str(tmp_path / "o")
    assert main(["convert", str(tmp_path / "nope.onnx"), "--calibration", str(xfile), "--out", out]) == 2
    assert "model file not found" in capsys.readouterr().err


FOLDABLE = [
    {"name": "c1", "type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same"},
    {"name": "p1", "type": "AveragePooling2D", "pool_size": 2},
    {"name": "c2", "type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
    {"name": "p2", "type": "AveragePooling2D", "pool_size": 2},
    {"name": "d", "type": "DepthwiseConv2D", "kernel_size": 2, "depth_multiplier": 2},
    {"name": "p3", "type": "AveragePooling2D", "pool_size": 2},
    {"name": "fl", "type": "Flatten"},
    {"name": "out", "type": "Dense", "units": 3},
]


def test_folding_average_pooling_removes_spiking_layers_not_ann_function():
    ann = _random_model(FOLDABLE, input_shape=(12, 12, 1))
    x = np.random.default_rng(2).uniform(0, 1, (10, 12, 12, 1)).astype(np.float32)
    folded = fold_average_pooling(ann)
    assert not any(s.type == "AveragePooling2D" for s in folded.layers)
    assert folded.metadata["folded_average_pooling"] == ["p1", "p2", "p3"]
    np.testing.assert_allclose(folded.ann_forward(x), ann.ann_forward(x), rtol=1e-4, atol=1e-6)


def test_softmax_to_relu_leaves_other_outputs_alone():
    ann = _random_model(FOLDABLE, input_shape=(12, 12, 1))
    assert softmax_to_relu(ann) is ann
