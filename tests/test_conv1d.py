"""1-D networks (Conv1D, 1-D pooling, padding, upsampling; issue 19 item 2): both importers
lower them exactly onto the 2-D layers as (1, length, channels) maps; the converted
nets simulate bit for bit as the reference does; what cannot be lowered is refused
by name.

The networks matching their framework's output are the *conv1d* fixtures of
test_import_onnx.py and test_import_keras.py.
"""
from pathlib import Path

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.model.layers import ModelError

onnx = pytest.importorskip("onnx")
pytest.importorskip("h5py")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from test_import_keras import layer_config, rewrite_keras  # noqa: E402
from test_import_onnx import make_graph  # noqa: E402

DATA = Path(__file__).parent / "data" / "import"


def _fixture(name):
    with np.load(DATA / f"{name}.npz") as d:
        return d["x"]


# ------------------------------------------------------------- lowering
def test_onnx_conv1d_becomes_2d_layers_with_1xk_windows():
    model = tn.from_onnx(DATA / "onnx_conv1d.onnx")
    assert model.input_shape == (32, 3)                       # (length, channels), as the user feeds it
    first = model.layers[0]
    assert (first.type, first.config["target_shape"], first.inbound) == ("Reshape", (1, 32, 3), ["input"])
    conv1, conv2, dw = model.layer("conv1_Conv"), model.layer("conv2_Conv"), model.layer("depthwise_Conv")
    assert (conv1.config["kernel_size"], conv1.config["padding"], conv1.output_shape) == ((1, 5), "same", (1, 32, 6))
    assert conv2.config["strides"] == (1, 2) and model.layer("conv2_Conv_pad").config["padding"] == ((0, 0), (1, 1))
    assert (dw.type, dw.config["dilation_rate"], dw.config["depth_multiplier"]) == ("DepthwiseConv2D", (1, 2), 2)
    assert model.layer("MaxPool").config["pool_size"] == (1, 2)
    assert model.layer("AveragePool").config["pool_size"] == (1, 2)


def test_keras_conv1d_becomes_2d_layers_with_1xk_windows():
    model = tn.from_keras(DATA / "keras_conv1d.keras")
    assert model.input_shape == (24, 3) and model.layers[0].type == "Reshape"
    assert model.layer("conv1d_1").config["strides"] == (1, 2)
    assert model.layer("conv1d_2").config["dilation_rate"] == (1, 2)
    assert model.layer("max_pooling1d").config["pool_size"] == (1, 2)


def _conv1d_net(after, extra_init=None, out_shape=("N", 2, 6), weight_shape=(2, 1, 3)):
    """x (N, 1, 6) -> Conv1d(1 -> 2, k=3, pads 1) -> ``after``."""
    w = np.random.default_rng(0).normal(size=weight_shape)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv", pads=[1, 1])]
    return make_graph(nodes + after, {"w": w, **(extra_init or {})}, ["N", 1, 6], out_shape)


def _assert_matches_onnx(proto, x_channels_first):
    model = tn.from_onnx(proto)
    want = ReferenceEvaluator(proto).run(None, {"x": x_channels_first})[0]
    got = model.ann_forward(x_channels_first.transpose(0, 2, 1))
    if got.ndim == 4:   # a (1, L, C) map is ONNX's (C, L)
        got = got[:, 0].transpose(0, 2, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return model


def test_onnx_global_pool_squeeze_and_resize_by_sizes():
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Resize", ["r", "", "", "sizes"], ["u"], name="resize", mode="nearest"),
             helper.make_node("GlobalAveragePool", ["u"], ["g"], name="gap"),
             helper.make_node("Squeeze", ["g", "axes"], ["s"], name="squeeze"),
             helper.make_node("Gemm", ["s", "fw", "fb"], ["y"], name="fc", transB=1)]
    proto = _conv1d_net(nodes, {"fw": rng.normal(size=(3, 2)), "fb": rng.normal(size=3)}, out_shape=(2, 3))
    proto.graph.initializer.extend([numpy_helper.from_array(np.asarray([2, 2, 18], np.int64), "sizes"),
                                    numpy_helper.from_array(np.asarray([2], np.int64), "axes")])
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2   # sizes names the batch size
    model = _assert_matches_onnx(proto, rng.normal(size=(2, 1, 6)).astype(np.float32))
    assert model.layer("resize").config["size"] == (1, 3)
    assert model.layer("gap").config["pool_size"] == (1, 18)


@pytest.mark.parametrize("axis, out_shape", [(1, ("N", 4, 6)), (2, ("N", 2, 12)), (-1, ("N", 2, 12))])
def test_onnx_concat_of_sequences_along_channels_or_length(axis, out_shape):
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[1]),
             helper.make_node("Concat", ["r", "p"], ["y"], name="cat", axis=axis)]
    model = _assert_matches_onnx(_conv1d_net(nodes, out_shape=out_shape),
                                 np.random.default_rng(4).normal(size=(2, 1, 6)).astype(np.float32))
    assert model.output_layer.output_shape == ((1, 6, 4) if axis == 1 else (1, 12, 2))


def test_onnx_flatten_of_the_raw_sequence_input_is_channel_major():
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    proto = make_graph(nodes, {"fw": rng.normal(size=(4, 15)), "fb": rng.normal(size=4)}, ["N", 3, 5], ["N", 4])
    model = _assert_matches_onnx(proto, rng.normal(size=(3, 3, 5)).astype(np.float32))
    assert [s.type for s in model.layers] == ["Flatten", "Dense"]   # no Reshape: nothing 1-D reads it


# --------------------------------------------------------------- refusals
def test_keras_causal_padding_is_refused_by_name(tmp_path):
    def causal(config):
        layer_config(config, "conv1d_1")["config"]["padding"] = "causal"
    with pytest.raises(ModelError, match="Keras layer 'conv1d_1' \\(Conv1D\\): padding 'causal' is not supported"):
        tn.from_keras(rewrite_keras(DATA / "keras_conv1d.keras", tmp_path / "m.keras", causal))


def test_keras_unsupported_1d_layer_is_named(tmp_path):
    def cropping(config):
        layer_config(config, "max_pooling1d")["class_name"] = "Cropping1D"
    with pytest.raises(ModelError, match=r"unsupported Keras layer\(s\): max_pooling1d \(Cropping1D\)"):
        tn.from_keras(rewrite_keras(DATA / "keras_conv1d.keras", tmp_path / "m.keras", cropping))


def test_onnx_matmul_along_the_length_axis_is_refused():
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "m"], ["y"], name="/fc/MatMul")]
    proto = _conv1d_net(nodes, {"m": np.ones((6, 4))}, out_shape=("N", 2, 4))
    with pytest.raises(ModelError, match=r"'/fc/MatMul' \(MatMul\) expects a \(N, features\) input, got shape "
                                         r"\(N, 2, 6\); flatten it first"):
        tn.from_onnx(proto)


def test_onnx_2d_convolution_on_a_sequence_is_refused():
    proto = _conv1d_net([helper.make_node("Relu", ["c"], ["y"], name="relu")], weight_shape=(2, 1, 3, 3))
    with pytest.raises(ModelError, match=r"'/conv/Conv': a weight of shape \(2, 1, 3, 3\) does not fit an "
                                         r"input of shape \(N, 1, 6\)"):
        tn.from_onnx(proto)


# ------------------------------------------------------------- simulation
@pytest.mark.parametrize("name", ["onnx_conv1d", "onnx_conv1d_branches", "keras_conv1d_branches"])
@pytest.mark.parametrize("backend", ["cpu"] + (["cuda"] if netgen.CUDA_SKIP_REASON is None else []))
def test_converted_1d_net_simulates_as_the_reference_bit_for_bit(name, backend):
    ann = tn.import_model(DATA / f"{name}{'.onnx' if name.startswith('onnx') else '.keras'}")
    x = np.abs(_fixture(name))
    model = tn.normalise(ann, x)
    want = tn.Simulator(model, duration=24, backend="reference").run(x)
    netgen.assert_identical(tn.Simulator(model, duration=24, backend=backend).run(x), want)
    assert all(c.sum() > 0 for c in want.spike_counts.values())   # every layer spikes


# -------------------------------------------------------------------- CLI
def test_cli_converts_an_onnx_1d_net_on_length_channels_calibration(tmp_path, capsys):
    from ttfs_native.cli import main
    x = np.random.default_rng(3).normal(size=(32, 32, 3)).astype(np.float32)    # (N, L, C)
    np.save(tmp_path / "x.npy", x)
    net = DATA / "onnx_conv1d.onnx"
    assert main(["convert", str(net), "--calibration", str(tmp_path / "x.npy"), "--out", str(tmp_path / "snn")]) == 0
    model = tn.load_model(tmp_path / "snn")
    assert model.input_shape == (32, 3) and model.metadata["normalisation"]["calibration_samples"] == 32
    np.testing.assert_array_equal(model.ann_forward(x).argmax(1), tn.from_onnx(net).ann_forward(x).argmax(1))
    np.save(tmp_path / "xcf.npy", x.transpose(0, 2, 1))                          # (N, C, L): a mistake
    assert main(["convert", str(net), "--calibration", str(tmp_path / "xcf.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "looks channels-first" in capsys.readouterr().err and not (tmp_path / "o").exists()
