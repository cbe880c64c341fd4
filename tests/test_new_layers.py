"""UpSampling2D (nearest) and the clipped ReLU (ReLU6, Clip(0, c)): model format,
importers, normalisation, operation counts, and every backend (issue 19)."""
import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native.model.layers import ModelError

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402
from test_import_onnx import conv_net  # noqa: E402


def _model(layers, shape=(3, 3, 1)):
    return netgen.normalised_model(shape, layers, np.random.default_rng(0).random((8,) + shape, dtype=np.float32))


def test_upsampling_repeats_each_pixel():
    model = _model([{"name": "up", "type": "UpSampling2D", "size": [2, 3]},
                    {"name": "flat", "type": "Flatten"}, {"name": "out", "type": "Dense", "units": 2}])
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    up = model.ann_forward(x, return_all=True)["up"]
    assert up.shape == (1, 6, 9, 1)
    np.testing.assert_array_equal(up[0, :, :, 0], np.kron(x[0, :, :, 0], np.ones((2, 3), np.float32)))


@pytest.mark.parametrize("config, message", [
    ({"size": 0}, "'size' must be >= 1"),
    ({"size": 2, "interpolation": "bilinear"}, "'interpolation' must be one of"),
])
def test_bad_upsampling_fields_are_named(config, message):
    with pytest.raises(ModelError, match=message):
        tn.Model((3, 3, 1), [{"name": "up", "type": "UpSampling2D", **config}], {})


def test_max_value_needs_a_relu_and_a_positive_number():
    dense = {"name": "d", "type": "Dense", "units": 2}
    with pytest.raises(ModelError, match="'max_value' must be a positive number"):
        tn.Model((4,), [dict(dense, max_value=-1)], {"d": {"kernel": np.ones((4, 2), np.float32),
                                                             "bias": np.zeros(2, np.float32)}})
    with pytest.raises(ModelError, match="clips a ReLU"):
        tn.Model((4,), [dict(dense, max_value=1, activation="linear")], {})


def test_clipped_layer_is_normalised_at_its_clip():
    shape = (4, 4, 1)
    x = np.random.default_rng(1).random((16,) + shape, dtype=np.float32)
    layers = [dict(netgen.conv_layer("c", 3, 3), max_value=0.5), {"name": "flat", "type": "Flatten"},
              {"name": "out", "type": "Dense", "units": 3}]
    rng = np.random.default_rng(2)
    ann = tn.Model(shape, layers, {"c": {"kernel": rng.normal(size=(3, 3, 1, 3)).astype(np.float32),
                                         "bias": np.zeros(3, np.float32)},
                                   "out": {"kernel": rng.normal(size=(48, 3)).astype(np.float32),
                                           "bias": np.zeros(3, np.float32)}})
    assert (ann.ann_forward(x, return_all=True)["c"] == 0.5).any()   # the clip is reached
    snn = tn.normalise(ann, x)
    assert snn.metadata["normalisation"]["scale_factors"]["c"] == 0.5
    assert snn.layer("c").max_value == pytest.approx(1.0)
    np.testing.assert_array_equal(snn.ann_forward(x).argmax(1), ann.ann_forward(x).argmax(1))
    np.testing.assert_allclose(snn.ann_forward(x, return_all=True)["c"] * 0.5,
                               ann.ann_forward(x, return_all=True)["c"], rtol=1e-6)


def test_relu6_and_upsampling_survive_the_model_folder(tmp_path):
    model, x, _ = netgen.make("upsample_clip", n=4)
    model.save(tmp_path / "m")
    again = tn.load_model(tmp_path / "m")
    assert [s.max_value for s in again.layers] == [s.max_value for s in model.layers]
    np.testing.assert_array_equal(again.ann_forward(x), model.ann_forward(x))


@pytest.mark.parametrize("backend", ["cpu"] + (["cuda"] if netgen.CUDA_SKIP_REASON is None else []))
def test_backends_equal_the_reference_bit_for_bit(backend):
    model, x, _ = netgen.make("upsample_clip", n=12)
    want = tn.Simulator(model, duration=24, backend="reference").run(x)
    got = tn.Simulator(model, duration=24, backend=backend).run(x)
    netgen.assert_identical(got, want)
    assert sum(c.sum() for c in want.spike_counts.values()) > 0


# ------------------------------------------------------------------ ONNX
def _clip(lo, hi, opset=13):
    inputs = ["c"] + (["lo"] if lo is not None else [""]) + (["hi"] if hi is not None else [])
    init = {k: np.float32(v) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
    return conv_net([helper.make_node("Clip", inputs, ["y"], name="clip")], init)


def test_onnx_clip_zero_to_c_is_a_clipped_relu():
    model = tn.from_onnx(_clip(0.0, 6.0))
    assert model.layers[0].activation == "relu" and model.layers[0].max_value == 6.0
    assert tn.from_onnx(_clip(0.0, None)).layers[0].max_value is None   # Clip(0, inf): a ReLU


def test_onnx_clip_with_a_negative_floor_is_refused():
    with pytest.raises(ModelError, match=r"'clip': Clip\(-1, 1\); only Clip\(0, max\)"):
        tn.from_onnx(_clip(-1.0, 1.0))


def _resize(scales, mode="nearest", ctm="asymmetric", nearest="floor", out=("N", 2, 8, 8)):
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Resize", ["r", "", "scales"], ["y"], name="resize", mode=mode,
                              coordinate_transformation_mode=ctm, nearest_mode=nearest)]
    return conv_net(nodes, {"scales": np.asarray(scales, np.float32)}, out_shape=out)


@pytest.mark.parametrize("ctm, nearest", [("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                                          ("pytorch_half_pixel", "round_prefer_ceil")])
def test_onnx_resize_nearest_by_integers_is_upsampling(ctm, nearest):
    model = tn.from_onnx(_resize([1, 1, 2, 2], ctm=ctm, nearest=nearest))
    assert model.layers[1].type == "UpSampling2D" and model.layers[1].config["size"] == (2, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"scales": [1, 1, 2, 2], "mode": "linear"}, "only 'nearest'"),
    ({"scales": [1, 1, 1.5, 2]}, "only integer scales"),
    ({"scales": [1, 2, 2, 2]}, "only integer scales of height and width"),
    ({"scales": [1, 1, 2, 2], "ctm": "asymmetric", "nearest": "round_prefer_ceil"}, "does not repeat"),
])
def test_onnx_resize_that_is_not_a_pixel_repeat_is_refused(kwargs, message):
    with pytest.raises(ModelError, match=message):
        tn.from_onnx(_resize(**kwargs))


# ------------------------------------------------------------------ info
def test_info_shows_how_each_node_is_converted(capsys):
    from pathlib import Path
    from ttfs_native.cli import main
    path = Path(__file__).parent / "data" / "import" / "onnx_upsample_relu6.onnx"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "UpSampling2D" in out and "[relu, max 6]" in out
    assert "/Clip -> clipped ReLU (max 6) of layer(s) 'conv1_Conv'" in out


def test_info_on_an_unconvertible_file_names_every_node(tmp_path, capsys):
    from ttfs_native.cli import main
    nodes = [helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("HardSwish", ["s"], ["y"], name="hs")]
    onnx.save(conv_net(nodes), tmp_path / "net.onnx")
    assert main(["info", str(tmp_path / "net.onnx")]) == 2
    err = capsys.readouterr().err
    assert "'sig'" in err and "'hs'" in err and len(err.strip().splitlines()) == 1
