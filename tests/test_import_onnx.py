"""ONNX importer: converted networks compute what PyTorch computed; clear errors otherwise.

The fixtures in tests/data/import/ come from tests/fixtures/make_import_fixtures.py
(PyTorch + torch.onnx.export); these tests need only numpy, onnx and pytest.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ttfs_native.importers import from_onnx  # noqa: E402
from ttfs_native.model.layers import ModelError  # noqa: E402
from ttfs_native.model import load_model  # noqa: E402

DATA = Path(__file__).parent / "data" / "import"
FIXTURES = ["onnx_lenet_bn", "onnx_depthwise_concat", "onnx_mlp_softmax", "onnx_upsample_relu6",
            "onnx_conv1d", "onnx_conv1d_branches"]
TOLERANCE = 1e-4


def reference(name: str):
    with np.load(DATA / f"{name}.npz") as d:
        return d["x"], d["y"]


@pytest.mark.parametrize("name", FIXTURES)
def test_converted_network_matches_pytorch_output(name):
    x, y = reference(name)
    model = from_onnx(DATA / f"{name}.onnx")
    assert np.abs(model.ann_forward(x) - y).max() <= TOLERANCE


@pytest.mark.parametrize("name", FIXTURES)
def test_saved_folder_reloads_to_identical_outputs(name, tmp_path):
    x, _ = reference(name)
    model = from_onnx(DATA / f"{name}.onnx")
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").ann_forward(x), model.ann_forward(x))


def test_lenet_layers_fold_batchnorm_merge_relu_and_drop_dropout():
    model = from_onnx(DATA / "onnx_lenet_bn.onnx")
    assert [(s.type, s.activation if s.is_weighted else None) for s in model.layers] == [
        ("Conv2D", "relu"), ("MaxPooling2D", None), ("Conv2D", "relu"), ("AveragePooling2D", None),
        ("Flatten", None), ("Dense", "relu"), ("Dense", "linear")]
    assert model.input_shape == (12, 12, 2)
    assert all("/" not in s.name for s in model.layers)


def test_depthwise_concat_padding_layers():
    model = from_onnx(DATA / "onnx_depthwise_concat.onnx")
    types = [s.type for s in model.layers]
    assert types.count("DepthwiseConv2D") == 1
    assert types.count("ZeroPadding2D") == 3  # the Pad node, conv pads (2, 1), max-pool pads 1 on 4x3
    assert model.layer("depthwise_Conv").config["depth_multiplier"] == 2
    assert model.layer("pool_same_MaxPool").config["padding"] == "same"
    assert model.layer("avg_AveragePool").config["padding"] == "same"


def test_softmax_becomes_output_activation():
    model = from_onnx(DATA / "onnx_mlp_softmax.onnx")
    assert model.output_layer.activation == "softmax"
    assert model.layers[1].type == "Dense"  # MatMul + Add merged into one Dense with bias
    assert model.weights[model.layers[1].name]["bias"] is not None


def test_accepts_loaded_model_proto_and_name_prefix():
    proto = onnx.load(str(DATA / "onnx_mlp_softmax.onnx"))
    model = from_onnx(proto, name_prefix="net_")
    assert all(s.name.startswith("net_") for s in model.layers)
    x, y = reference("onnx_mlp_softmax")
    assert np.abs(model.ann_forward(x) - y).max() <= TOLERANCE


# ------------------------------------------------------------- small graphs
def make_graph(nodes, initializers, input_shape, output_shape, opset=13):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def dense(name, inp, out, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    init = {f"{name}.w": rng.normal(size=(n_out, n_in)), f"{name}.b": rng.normal(size=n_out)}
    return helper.make_node("Gemm", [inp, f"{name}.w", f"{name}.b"], [out], name=name, transB=1), init


def conv_net(after_conv, extra_init=None, out_shape=("N", 2, 4, 4)):
    w = np.random.default_rng(0).normal(size=(2, 1, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1])]
    return make_graph(nodes + after_conv, {"w": w, **(extra_init or {})}, ["N", 1, 4, 4], out_shape)


def test_duplicate_and_missing_node_names_give_unique_layer_names():
    g1, i1 = dense("fc", "x", "h", 4, 3)
    g2, i2 = dense("fc2", "r", "y", 3, 2, seed=1)
    g2.name = "fc"  # same name as the first Gemm
    proto = make_graph([g1, helper.make_node("Relu", ["h"], ["r"]), g2], {**i1, **i2}, ["N", 4], ["N", 2])
    model = from_onnx(proto)
    assert [s.name for s in model.layers] == ["fc", "fc_2"]
    assert proto.graph.node[1].name == ""  # the caller's model is left as it was


def test_unsupported_operators_are_all_listed():
    nodes = [helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Tanh", ["s"], ["t"], name="tanh"),
             helper.make_node("Erf", ["t"], ["e"], name="erf"),
             helper.make_node("Tanh", ["e"], ["t2"], name="tanh2"),
             helper.make_node("Relu", ["t2"], ["y"], name="relu")]
    with pytest.raises(ModelError, match="4 ONNX node.s. cannot be converted") as err:
        from_onnx(conv_net(nodes))
    for name in ("'sig'", "'tanh'", "'tanh2'", "'erf'", "an activation other than ReLU", "no conversion rule"):
        assert name in str(err.value)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_onnx(tmp_path / "nope.onnx")


def test_hidden_layer_without_relu_is_rejected_by_name():
    g1, i1 = dense("fc1", "x", "h", 4, 3)
    g2, i2 = dense("fc2", "h", "y", 3, 2, seed=1)
    with pytest.raises(ModelError, match="'fc1'.*no ReLU"):
        from_onnx(make_graph([g1, g2], {**i1, **i2}, ["N", 4], ["N", 2]))


def test_batchnorm_not_after_conv_or_gemm_is_rejected():
    init = {k: np.ones(1) for k in ("s", "b", "m", "v")}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")
    with pytest.raises(ModelError, match="'bn'.*batch normalization must directly follow"):
        from_onnx(make_graph([node], init, ["N", 1, 4, 4], ["N", 1, 4, 4]))


def test_relu_after_average_pool_of_linear_conv_is_rejected():
    nodes = [helper.make_node("AveragePool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"], name="relu")]
    with pytest.raises(ModelError, match="'relu'.*ReLU must follow"):
        from_onnx(conv_net(nodes, out_shape=("N", 2, 2, 2)))


def test_relu_moves_back_through_max_pool():
    nodes = [helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"], name="relu")]
    model = from_onnx(conv_net(nodes, out_shape=("N", 2, 2, 2)))
    assert model.layers[0].activation == "relu"


def test_relu_cannot_move_back_when_pre_activation_is_read_elsewhere():
    nodes = [helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p"], ["r"], name="relu"),
             helper.make_node("Concat", ["r", "p"], ["y"], name="cat", axis=1)]
    with pytest.raises(ModelError, match="also read elsewhere"):
        from_onnx(conv_net(nodes, out_shape=("N", 4, 2, 2)))


@pytest.mark.parametrize("kernel, strides, pads, out", [
    ([3, 3], [1, 1], [1, 1, 1, 1], 4),   # TensorFlow 'same' pads (PyTorch AvgPool2d(3, 1, 1))
    ([2, 2], [2, 2], [1, 1, 1, 1], 3),   # pads 'same' cannot express
])
def test_average_pool_counting_pads_is_zero_padding_then_a_valid_pool(kernel, strides, pads, out):
    from onnx.reference import ReferenceEvaluator
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("AveragePool", ["r"], ["y"], name="pool", kernel_shape=kernel,
                              strides=strides, pads=pads, count_include_pad=1)]
    graph = conv_net(nodes, out_shape=("N", 2, out, out))
    model = from_onnx(graph)
    assert [s.type for s in model.layers][-2:] == ["ZeroPadding2D", "AveragePooling2D"]
    x = np.random.default_rng(1).normal(size=(3, 1, 4, 4)).astype(np.float32)
    want = ReferenceEvaluator(graph).run(None, {"x": x})[0].transpose(0, 2, 3, 1)
    got = model.ann_forward(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want).max() <= TOLERANCE


def test_average_pool_pads_that_are_not_tf_same_are_rejected():
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("AveragePool", ["r"], ["y"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2], pads=[1, 1, 1, 1])]
    with pytest.raises(ModelError, match="'pool'.*differ from TensorFlow 'same'"):
        from_onnx(conv_net(nodes, out_shape=("N", 2, 3, 3)))


def test_max_pool_explicit_pads_on_possibly_negative_input_are_rejected():
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                            strides=[2, 2], pads=[1, 1, 1, 1])
    with pytest.raises(ModelError, match="'pool'.*may be negative"):
        from_onnx(make_graph([node], {}, ["N", 1, 4, 4], ["N", 1, 3, 3]))


def test_adding_a_layer_output_to_itself_is_rejected():
    """(Residual adds convert: tests/test_residual.py.)"""
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "r"], ["y"], name="add")]
    with pytest.raises(ModelError, match="'add'.*reads a layer twice"):
        from_onnx(conv_net(nodes))


def test_non_flattening_reshape_is_rejected():
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["y"], name="reshape")]
    with pytest.raises(ModelError, match="'reshape'.*only"):
        from_onnx(conv_net(nodes, {"shape": np.array([0, 4, 2, 4])}, out_shape=("N", 4, 2, 4)))


def test_symbolic_input_needs_input_shape():
    node, init = dense("fc", "x", "y", 4, 2)
    graph = make_graph([node], init, ["N", "F"], ["N", 2])
    with pytest.raises(ModelError, match="input_shape"):
        from_onnx(graph)
    assert from_onnx(graph, input_shape=(4,)).input_shape == (4,)


def test_flatten_permutes_first_dense_rows_from_chw_to_hwc():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 2 * 3 * 4))
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    model = from_onnx(make_graph(nodes, {"w": w}, ["N", 2, 3, 4], ["N", 3]))
    x_chw = rng.normal(size=(5, 2, 3, 4)).astype(np.float32)
    expected = x_chw.reshape(5, -1) @ w.T
    np.testing.assert_allclose(model.ann_forward(x_chw.transpose(0, 2, 3, 1)), expected, atol=1e-5)


def test_concatenated_flat_features_keep_their_chw_order():
    rng = np.random.default_rng(8)
    w = rng.normal(size=(3, 2 * 24))
    nodes = [helper.make_node("Flatten", ["x"], ["f1"], name="flat1"),
             helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[1, 1]),
             helper.make_node("Flatten", ["p"], ["f2"], name="flat2"),
             helper.make_node("Concat", ["f1", "f2"], ["f"], name="cat", axis=1),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    model = from_onnx(make_graph(nodes, {"w": w}, ["N", 2, 3, 4], ["N", 3]))
    x_chw = rng.normal(size=(5, 2, 3, 4)).astype(np.float32)
    flat = x_chw.reshape(5, -1)
    expected = np.concatenate([flat, flat], axis=1) @ w.T
    np.testing.assert_allclose(model.ann_forward(x_chw.transpose(0, 2, 3, 1)), expected, atol=1e-5)


def test_constant_node_weights_and_squeeze_match_initializers_and_flatten():
    rng = np.random.default_rng(6)
    w = rng.normal(size=(3, 2))
    head = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap")]
    squeezed = conv_net(head + [
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2, 3]))),
        helper.make_node("Squeeze", ["g", "axes"], ["s"], name="squeeze"),
        helper.make_node("Constant", [], ["fcw"], value=numpy_helper.from_array(w.astype(np.float32))),
        helper.make_node("Gemm", ["s", "fcw"], ["y"], name="fc", transB=1)], out_shape=("N", 3))
    flattened = conv_net(head + [
        helper.make_node("Flatten", ["g"], ["s"], name="flat"),
        helper.make_node("Gemm", ["s", "fcw"], ["y"], name="fc", transB=1)], {"fcw": w}, out_shape=("N", 3))
    x = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(from_onnx(squeezed).ann_forward(x), from_onnx(flattened).ann_forward(x))


# ------------------------------------------------- regenerate with PyTorch
def _fixture_script():
    spec = importlib.util.spec_from_file_location(
        "make_import_fixtures", Path(__file__).parent / "fixtures" / "make_import_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("keep_batchnorm", [True, False])
def test_fresh_pytorch_export_matches(name, keep_batchnorm, tmp_path):
    torch = pytest.importorskip("torch")
    script = _fixture_script()
    module, shape, opset, dynamic = script.torch_models()[name]
    script.randomize_batchnorm(module, seed=3)
    path = tmp_path / f"{name}.onnx"
    if keep_batchnorm:
        script.export_onnx(module, shape, opset, dynamic, path)
    else:  # default eval export: the exporter folds batch norm itself
        torch.onnx.export(module, torch.zeros((2,) + shape), str(path), dynamo=False, opset_version=opset)
    channels_last = shape if len(shape) == 1 else (*shape[1:], shape[0])
    x = np.random.default_rng(7).normal(size=(2,) + channels_last).astype(np.float32)
    y = script.torch_reference(module, x)
    assert np.abs(from_onnx(path).ann_forward(x) - y).max() <= TOLERANCE
