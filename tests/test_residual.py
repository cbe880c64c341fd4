"""The residual Add layer (SEMANTICS.md "Add"): model format, normalisation,
importers, the hand-off to the native engines and its golden cases on every
backend. (The random Add networks of tests/netgen.py run through every
backend-agreement test as well.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native import _core
from ttfs_native.model import ModelError
from ttfs_native.model.residual import add_bias, add_groups
from ttfs_native.model.transforms import ann_view, apply_layer_scales, apply_shortcut_scales, shortcut_inbounds

GOLDEN = Path(__file__).parent / "data" / "golden_add"
CASES = sorted(p for p in GOLDEN.iterdir() if p.is_dir())


def _conv(name, inbound, activation="relu", filters=2):
    return {"name": name, "type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "same",
            "inbound": inbound, "activation": activation}


def _model(layers, shape=(4, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    weights = {n: {"kernel": rng.normal(size=k).astype(np.float32),
                   "bias": None if b is None else rng.normal(size=b).astype(np.float32)}
               for n, (k, b) in tn.model.weight_shapes(shape, layers).items()}
    return tn.Model(shape, layers, weights)


# ------------------------------------------------------------ model format
def test_branches_and_identity_inbounds_are_told_apart():
    model, _, _ = netgen.make("resnet_blocks", n=4)
    assert [s.name for s in model.layers if s.is_branch] == ["b1b", "b2b", "proj"]
    assert model.layer("b1b").merge == "add1" and model.layer("proj").merge == "add2"
    assert [s.name for s in model.spiking_layers] == ["stem", "b1a", "add1", "b2a", "add2", "gap", "out"]
    groups = add_groups(model, model.layer("add1"))
    assert [(g.source, g.layer.name if g.layer else None) for g in groups] == [("b1a", "b1b"), ("stem", None)]
    bias = add_bias(model, model.layer("add2"))   # b2b's and proj's biases, scaled
    s = model.layer("add2").scales
    expected = model.weights["b2b"]["bias"] * np.float32(s[0]) + model.weights["proj"]["bias"] * np.float32(s[1])
    np.testing.assert_array_equal(bias, expected)


@pytest.mark.parametrize("layers, message", [
    ([_conv("a", ["input"]), {"name": "add", "type": "Add", "inbound": ["a"]}], "at least two inbound"),
    ([_conv("a", ["input"]), {"name": "p", "type": "MaxPooling2D", "inbound": ["a"]},
      {"name": "add", "type": "Add", "inbound": ["a", "p"]}], "inputs of one shape"),
    ([_conv("a", ["input"]), {"name": "add", "type": "Add", "inbound": ["a", "a"]}], "reads a layer twice"),
    ([_conv("a", ["input"]), {"name": "add", "type": "Add", "inbound": ["a", "input"], "scales": [1.0]}],
     "'scales' has 1 entries"),
    ([_conv("a", ["input"]), {"name": "add", "type": "Add", "inbound": ["a", "input"], "activation": "softmax"}],
     "'activation' must be one of"),
    ([_conv("a", ["input"], "linear"), _conv("b", ["a"]), {"name": "add", "type": "Add", "inbound": ["a", "b"]}],
     "layer 'a': activation 'linear' is only allowed .*read only by an Add"),
    ([_conv("a", ["input"]), {"name": "add", "type": "Add", "inbound": ["a", "input"], "activation": "linear"},
      _conv("c", ["add"])], "layer 'add': activation 'linear' is only allowed on the output"),
])
def test_bad_adds_are_refused_by_name(layers, message):
    with pytest.raises(ModelError, match=message):
        _model(layers)


def test_ann_forward_adds_branches_and_identity_with_scales():
    layers = [_conv("a", ["input"]), _conv("b", ["a"], "linear"),
              {"name": "add", "type": "Add", "inbound": ["b", "a"], "scales": [0.5, 2.0], "max_value": 1.5}]
    model = _model(layers)
    x = np.random.default_rng(1).random((3, 4, 4, 2), dtype=np.float32)
    acts = model.ann_forward(x, return_all=True)
    expected = np.clip(np.float32(0.5) * acts["b"] + np.float32(2.0) * acts["a"], 0, 1.5)
    np.testing.assert_allclose(acts["add"], expected, rtol=1e-6)


def test_normalisation_shares_the_add_scale_and_keeps_the_ann():
    """Every layer of the normalised ANN computes the original activation / its
    lambda, through identity shortcuts and projections alike."""
    model, x, _ = netgen.make("resnet_blocks", n=16)
    original = ann_view(model)
    normalised = tn.normalise(original, x, percentile=99.0)
    factors = normalised.metadata["normalisation"]["scale_factors"]
    assert factors["b1b"] == factors["add1"] and factors["proj"] == factors["add2"]
    a, b = original.ann_forward(x, return_all=True), normalised.ann_forward(x, return_all=True)
    for name in ("add1", "add2", "out"):
        np.testing.assert_allclose(b[name] * factors[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)
    before, after = original.layer("add1").scales, normalised.layer("add1").scales
    assert after[0] == before[0]   # the branch's kernel undoes its input's scale ...
    assert after[1] == pytest.approx(before[1] * factors["stem"] / factors["add1"])   # ... the identity's factor


def test_threshold_scale_of_an_add_scales_all_its_inbounds():
    model, x, _ = netgen.make("resnet_blocks", n=4)
    scaled = apply_layer_scales(model, {"add1": 2.0})
    assert scaled.layer("add1").scales == tuple(s / 2.0 for s in model.layer("add1").scales)
    back = apply_layer_scales(scaled, {"add1": 0.5})
    np.testing.assert_allclose(back.ann_forward(x), model.ann_forward(x), rtol=1e-6)
    with pytest.raises(ValueError, match="residual branches"):
        apply_layer_scales(model, {"b1b": 2.0})


# ------------------------------------------------------------- hand-off
def _node_args(kernel=np.zeros(0, np.float32)):
    return (kernel, np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
            np.zeros(0, np.int64), np.zeros(0))


def test_open_nodes_are_read_by_one_add_only():
    g = _core.Geometry(in_h=1, in_w=1, in_c=3, out_h=1, out_w=1, out_c=3)
    net = _core.Network()
    net.add_node(_core.NodeKind.Input, "input", [], g, 3, False, *_node_args())
    net.add_node(_core.NodeKind.DepthwiseConv2D, "group", [0], g, 3, False,
                 *_node_args(np.ones(3, np.float32)), open=True)
    dense = _core.Geometry(in_h=1, in_w=1, in_c=3, out_h=1, out_w=1, out_c=3, multiplier=3)
    with pytest.raises(ValueError, match="reads an open node"):
        net.add_node(_core.NodeKind.Dense, "d", [1], dense, 3, False, np.ones(9, np.float32),
                     *_node_args()[1:5], np.ones(3))
    with pytest.raises(ValueError, match="inbound must be open nodes"):
        net.add_node(_core.NodeKind.Add, "bad", [0], g, 3, False, *_node_args()[:5], np.ones(3))
    net.add_node(_core.NodeKind.Add, "add", [1], g, 3, False, *_node_args()[:5], np.ones(3))
    with pytest.raises(ValueError, match="another node reads"):
        net.add_node(_core.NodeKind.Add, "add2", [1], g, 3, False, *_node_args()[:5], np.ones(3))


# ------------------------------------------------------------- golden cases
@pytest.mark.parametrize("backend", ["reference"] + netgen.NATIVE_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_add_cases_bit_identical(case, backend):
    result, expected = netgen.run_golden(case, backend)
    netgen.assert_golden(result, expected, f"{case.name}/{backend}")
    info = json.loads((case / "case.json").read_text())
    assert any(s.is_add for s in tn.load_model(case / "model").layers), info["case"]
    assert all((t > 0).any() for t in result.first_spike_times.values())   # every layer spikes


# ------------------------------------------------------------- importers
def test_onnx_residual_block_converts_and_matches_onnx():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    init = {"w0": rng.normal(size=(3, 2, 3, 3)), "w1": rng.normal(size=(3, 3, 3, 3)),
            "w2": rng.normal(size=(3, 3, 3, 3)), "wp": rng.normal(size=(3, 3, 1, 1)),
            "b1": rng.normal(size=3), "fc.w": rng.normal(size=(4, 3)), "fc.b": rng.normal(size=4)}
    bn = {f"bn.{k}": v for k, v in zip("sbmv", (rng.random(3) + 0.5, rng.normal(size=3),
                                                 rng.normal(size=3), rng.random(3) + 0.5))}
    conv = dict(pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="stem", **conv),
             helper.make_node("Relu", ["c0"], ["r0"], name="stem_relu"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", **conv),
             helper.make_node("BatchNormalization", ["c2", "bn.s", "bn.b", "bn.m", "bn.v"], ["n2"], name="bn2"),
             helper.make_node("Add", ["n2", "r0"], ["s1"], name="add_identity"),
             helper.make_node("Relu", ["s1"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "wp"], ["p"], name="proj"),
             helper.make_node("Sum", ["r2", "p", "c1"], ["s2"], name="sum3"),
             helper.make_node("Relu", ["s2"], ["r3"], name="relu3"),
             helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "resnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in {**init, **bn}.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    # conv1's raw output is read by relu1 and by the sum: neither a ReLU layer nor a branch
    with pytest.raises(ModelError, match="relu1.*tensor 'c1' is also read elsewhere"):
        tn.from_onnx(proto)
    nodes[9] = helper.make_node("Sum", ["r2", "p", "r1"], ["s2"], name="sum3")
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    model = tn.from_onnx(proto)
    kinds = {s.name: (s.type, s.activation, s.is_branch) for s in model.layers if s.has_activation}
    assert kinds["conv2"] == ("Conv2D", "linear", True) and kinds["proj"] == ("Conv2D", "linear", True)
    assert kinds["add_identity"] == ("Add", "relu", False) and kinds["sum3"] == ("Add", "relu", False)
    assert model.layer("sum3").inbound == ["add_identity", "proj", "conv1"]
    x = np.random.default_rng(1).random((5, 2, 5, 5), dtype=np.float32)
    want = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.ann_forward(x.transpose(0, 2, 3, 1)), want, rtol=1e-4, atol=1e-4)
    assert any("add_identity" in line and "(branch)" in line and "(identity)" in line
               for line in model.metadata["import_log"])


def _keras_h5(path, layers, weights, input_shape):
    """A Keras 2 style .h5 file of a Functional model (config + weights), written with h5py."""
    h5py = pytest.importorskip("h5py")

    def tensor(name):
        return [name, 0, 0, {}]

    entries = [{"class_name": "InputLayer", "name": "inp", "inbound_nodes": [],
                "config": {"name": "inp", "batch_input_shape": [None, *input_shape]}}]
    for cls, name, cfg, inbound in layers:
        entries.append({"class_name": cls, "name": name, "config": {"name": name, **cfg},
                        "inbound_nodes": [[tensor(n) for n in inbound]]})
    config = {"class_name": "Functional", "config": {"name": "m", "layers": entries,
                                                     "input_layers": [["inp", 0, 0]],
                                                     "output_layers": [[layers[-1][1], 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        group = f.create_group("model_weights")
        for name, arrays in weights.items():
            g = group.create_group(name)
            names = [f"{name}/{k}:0" for k in arrays]
            for n, a in zip(names, arrays.values()):
                g.create_dataset(n, data=a)
            g.attrs["weight_names"] = [n.encode() for n in names]


def test_keras_add_converts_to_the_same_network(tmp_path):
    rng = np.random.default_rng(2)
    conv = {"kernel_size": [3, 3], "padding": "same", "filters": 3}
    layers = [("Conv2D", "c1", dict(conv, activation="relu"), ["inp"]),
              ("Conv2D", "c2", dict(conv, activation="linear"), ["c1"]),
              ("Add", "add", {}, ["c2", "c1"]),
              ("ReLU", "relu", {"max_value": 6.0}, ["add"]),
              ("Flatten", "flat", {}, ["relu"]),
              ("Dense", "out", {"units": 2, "activation": "linear"}, ["flat"])]
    weights = {"c1": {"kernel": rng.normal(size=(3, 3, 2, 3)), "bias": rng.normal(size=3)},
               "c2": {"kernel": rng.normal(size=(3, 3, 3, 3)), "bias": rng.normal(size=3)},
               "out": {"kernel": rng.normal(size=(48, 2)), "bias": rng.normal(size=2)}}
    weights = {n: {k: v.astype(np.float32) for k, v in w.items()} for n, w in weights.items()}
    _keras_h5(tmp_path / "m.h5", layers, weights, (4, 4, 2))
    model = tn.from_keras(tmp_path / "m.h5")
    assert [(s.name, s.type) for s in model.layers if s.is_add] == [("add", "Add")]
    assert model.layer("add").max_value == 6.0 and model.layer("c2").is_branch
    by_hand = tn.Model((4, 4, 2), [
        _conv("c1", ["input"], filters=3), _conv("c2", ["c1"], "linear", filters=3),
        {"name": "add", "type": "Add", "inbound": ["c2", "c1"], "max_value": 6.0},
        {"name": "flat", "type": "Flatten"}, {"name": "out", "type": "Dense", "units": 2, "activation": "linear"}],
        weights)
    x = np.random.default_rng(3).random((4, 4, 4, 2), dtype=np.float32)
    np.testing.assert_array_equal(model.ann_forward(x), by_hand.ann_forward(x))


# ------------------------------------------------------------ shortcut factors (calibration)
def test_shortcut_inbounds_are_the_groups_fewer_layers_from_the_input():
    model, _, _ = netgen.make("resnet_blocks", n=4)
    # add1: b1b reads b1a (2 spiking layers deep), the identity 'stem' is 1 deep;
    # add2: b2b reads b2a (add1 + 1), the projection 'proj' reads add1 itself
    assert shortcut_inbounds(model) == {"add1": (1,), "add2": (1,)}
    mixed, _, _ = netgen.make("residual_mixed", n=4)
    # add0: the depthwise branch and the identity both read the input; out: d2 reads d1 (deeper than flat)
    assert shortcut_inbounds(mixed) == {"out": (2,)}


def test_shortcut_scales_change_the_add_and_the_calibration_record_undoes_them():
    model, x, _ = netgen.make("resnet_blocks", n=8)
    scaled = apply_shortcut_scales(model, {"add1": 0.5, "add2": 0.25})
    for add, alpha in (("add1", 0.5), ("add2", 0.25)):   # the shortcut's factor only
        before = model.layer(add).scales
        assert scaled.layer(add).scales == (before[0], before[1] * alpha)
    groups = add_groups(scaled, scaled.layer("add2"))    # the projection's kernel carries the factor
    np.testing.assert_array_equal(groups[1].kernel, model.weights["proj"]["kernel"] * np.float32(0.25))
    assert not np.allclose(scaled.ann_forward(x), model.ann_forward(x))
    scaled.metadata["calibration"] = {"layer_threshold_scales": {}, "shortcut_scales": {"add1": 0.5, "add2": 0.25}}
    np.testing.assert_allclose(ann_view(scaled).ann_forward(x), model.ann_forward(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="not a residual Add with a shortcut: b1b"):
        apply_shortcut_scales(model, {"b1b": 0.5})
    with pytest.raises(ValueError, match="must be a positive number"):
        apply_shortcut_scales(model, {"add1": 0.0})


def test_calibration_searches_shortcut_factors_only_where_there_are_adds():
    from ttfs_native.conversion.calibrate import calibrate, split_calibration
    model, x, y = netgen.make("resnet_blocks", n=90, seed=3)
    y = tn.model.ann.ann_predictions(model, x)     # labels the ANN gets right: the SNN has something to match
    grid = dict(max_steps=32, percentiles=(99.9,), v_thresh=(1.0,), dts=(1.0,), per_channel=(False,),
                layer_factors=(), backend="cpu")
    result = calibrate(model, x, y, shortcut_factors=(0.5, 0.25), **grid)
    tried = {t.setting.shortcut_scales for t in result.trials}
    for add in ("add1", "add2"):   # every factor of every Add reached the whole search part
        assert {dict(s).get(add) for s in tried} >= {0.5, 0.25}
    chosen = dict(result.best.setting.shortcut_scales)
    assert result.model.metadata["calibration"].get("shortcut_scales", {}) == chosen
    assert [result.model.layer(a).scales[1] / ann_view(result.model).layer(a).scales[1]
            for a in ("add1", "add2")] == pytest.approx([chosen.get("add1", 1.0), chosen.get("add2", 1.0)])
    # the calibrated model's ANN is the network's: the factors are an SNN setting only
    np.testing.assert_array_equal(tn.model.ann.ann_predictions(result.model, x), y)
    fit, _ = split_calibration(90, 0.3)
    again = tn.Simulator.for_model(result.model, backend="cpu").run(x[fit], y[fit])
    assert again.accuracy == pytest.approx(result.best.accuracy)
    # no shortcut factors: the same search without that stage
    without = calibrate(model, x, y, shortcut_factors=(), **grid)
    assert all(not t.setting.shortcut_scales for t in without.trials)
    # on this net a shortcut factor is chosen (on the held-out part), better than the search without them
    assert chosen and result.holdout_best.score > without.holdout_best.score


def test_calibration_of_a_network_without_adds_is_unchanged_by_shortcut_factors():
    from ttfs_native.conversion.calibrate import calibrate
    model, x, y = netgen.make("branches_concat", n=60)
    grid = dict(max_steps=16, percentiles=(99.9,), v_thresh=(1.0, 2.0), dts=(1.0,), per_channel=(False,),
                layer_factors=(2.0,), backend="cpu")
    a, b = calibrate(model, x, y, **grid), calibrate(model, x, y, shortcut_factors=(), **grid)
    assert a.best.setting == b.best.setting and a.simulated_samples == b.simulated_samples
    assert "shortcut_scales" not in a.model.metadata["calibration"]


def test_calibrate_command_searches_shortcut_factors_and_saves_them(tmp_path, capsys):
    from ttfs_native.cli import main
    model, x, _ = netgen.make("resnet_blocks", n=60, seed=3)
    y = tn.model.ann.ann_predictions(model, x)
    model.save(tmp_path / "net")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["calibrate", str(tmp_path / "net"), "--calibration", str(tmp_path / "x.npy"), "--labels",
            str(tmp_path / "y.npy"), "--max-steps", "32", "--percentiles", "99.9", "--v-thresh", "1", "--dt", "1",
            "--no-fold", "--no-per-channel", "--layer-factors", "", "--backend", "cpu"]
    assert main(args + ["--shortcut-factors", "0.5,0.25", "--layer-rounds", "2", "--out", str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    saved = tn.load_model(tmp_path / "cal")
    chosen = saved.metadata["calibration"].get("shortcut_scales", {})
    assert chosen and "chosen:" in out and all(f"{n} x{a:g}" in out for n, a in chosen.items())
    np.testing.assert_array_equal(tn.model.ann.ann_predictions(saved, x), y)
    assert main(args + ["--layer-rounds", "0"]) == 2
    assert "--layer-rounds must be >= 1" in capsys.readouterr().err


_KERAS_RESNET = """
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
sys.path.insert(0, sys.argv[1])
from train_resnet_keras import build_net
import keras
keras.utils.set_random_seed(1)
net = build_net()
rng = np.random.default_rng(1)
for layer in net.layers:   # batch-norm statistics that fold into something non-trivial
    if isinstance(layer, keras.layers.BatchNormalization):
        c = layer.get_weights()[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                           rng.uniform(0.5, 2.0, c)])
x = rng.random((6, 28, 28, 1), dtype=np.float32)
out = sys.argv[2]
np.save(os.path.join(out, "x.npy"), x)
np.save(os.path.join(out, "logits.npy"), net.predict(x, verbose=0))
net.save(os.path.join(out, "resnet.keras"))
net.save(os.path.join(out, "resnet.h5"))
"""


def test_keras_resnet_of_the_training_script_converts_exactly(tmp_path):
    """The MNIST ResNet of scripts/train_resnet_keras.py, saved by Keras 3 itself (PyTorch
    backend), imports from .keras and .h5 with its residual Adds and computes Keras's logits."""
    import importlib.util
    import subprocess
    import sys
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("needs keras and torch (Keras 3 on its PyTorch backend)")
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    run = subprocess.run([sys.executable, "-c", _KERAS_RESNET, str(scripts), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    if run.returncode != 0 and "ModuleNotFoundError" in run.stderr:
        pytest.skip(f"Keras on its PyTorch backend unavailable: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr
    x, logits = np.load(tmp_path / "x.npy"), np.load(tmp_path / "logits.npy")
    for name in ("resnet.keras", "resnet.h5"):
        model = tn.from_keras(tmp_path / name)
        assert sum(s.is_add for s in model.layers) == 2
        assert sum(s.is_branch for s in model.layers) == 3        # two main branches, one projection
        np.testing.assert_allclose(model.ann_forward(x), logits, rtol=1e-4, atol=1e-4)
        assert np.array_equal(model.ann_forward(x).argmax(1), logits.argmax(1))
