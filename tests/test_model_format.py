"""Model folders: round trip, shape inference and every validation error."""
import json

import numpy as np
import pytest

import netgen
import ttfs_native as tn
from ttfs_native import ModelError


def _write(tmp_path, desc, arrays):
    (tmp_path / "model.json").write_text(json.dumps(desc))
    np.savez(tmp_path / "weights.npz", **arrays)
    return tmp_path


def _small(tmp_path, layers=None, arrays=None, **top):
    desc = {"format": "ttfs-native-model", "version": 1, "input_shape": [4, 4, 1],
            "layers": layers if layers is not None else [
                {"name": "flat", "type": "Flatten"},
                {"name": "out", "type": "Dense", "units": 3}]}
    desc.update(top)
    if arrays is None:
        arrays = {"out/kernel": np.ones((16, 3), np.float32), "out/bias": np.zeros(3, np.float32)}
    return _write(tmp_path, desc, arrays)


def test_round_trip_keeps_layers_and_outputs(tmp_path):
    model, x, _ = netgen.make("branches_concat", n=4)
    loaded = tn.load_model(model.save(tmp_path / "m"))
    assert [s.to_json() for s in loaded.layers] == [s.to_json() for s in model.layers]
    np.testing.assert_array_equal(loaded.ann_forward(x), model.ann_forward(x))


def test_inbound_defaults_to_previous_layer(tmp_path):
    model = tn.load_model(_small(tmp_path))
    assert model.layers[1].inbound == ["flat"]
    assert model.layers[1].output_shape == (3,)


@pytest.mark.parametrize("arch", sorted(netgen.ARCHITECTURES))
def test_shapes_match_the_forward_pass(arch):
    model, x, _ = netgen.make(arch, n=2)
    acts = model.ann_forward(x, return_all=True)
    for spec in model.layers:
        assert acts[spec.name].shape[1:] == spec.output_shape, spec.name


@pytest.mark.parametrize("layer, message", [
    ({"name": "x", "type": "LSTM"}, "unknown layer type 'LSTM'"),
    ({"name": "x", "type": "Dense"}, "Dense needs 'units'"),
    ({"name": "x", "type": "Dense", "units": 0}, "'units' must be >= 1"),
    ({"name": "x", "type": "Dense", "units": 3, "colour": "red"}, "unknown field"),
    ({"name": "x", "type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "full"}, "'padding' must be one of"),
    ({"name": "x", "type": "Conv2D", "filters": 2, "kernel_size": 9}, "does not fit"),
    ({"name": "x", "type": "Conv2D", "filters": 2, "kernel_size": [3, 3, 3]}, "pair of integers"),
    ({"name": "x", "type": "Dense", "units": 3, "activation": "tanh"}, "'activation' must be one of"),
    ({"name": "x", "type": "Reshape", "target_shape": [5, 5]}, "cannot reshape"),
    ({"name": "x", "type": "Concatenate", "inbound": ["input"]}, "at least two inbound"),
    ({"name": "x", "type": "Dense", "units": 3, "inbound": ["nowhere"]}, "'nowhere' is not defined"),
    ({"name": "x", "type": "Dense", "units": 3, "inbound": ["x"]}, "cycle"),
    ({"name": "input", "type": "Flatten"}, "reserved"),
    ({"type": "Flatten"}, "needs a non-empty 'name'"),
])
def test_bad_layer_is_named(layer, message):
    with pytest.raises(ModelError, match=message):
        tn.Model((4, 4, 1), [layer], {})


def test_layer_that_feeds_nothing_is_rejected():
    layers = [{"name": "a", "type": "Flatten"}, {"name": "b", "type": "Flatten", "inbound": ["input"]}]
    with pytest.raises(ModelError, match="'a' feed no other layer"):
        tn.Model((4, 4, 1), layers, {})


def test_later_layer_reference_is_a_cycle(tmp_path):
    layers = [{"name": "a", "type": "Flatten", "inbound": ["b"]}, {"name": "b", "type": "Flatten"}]
    with pytest.raises(ModelError, match="cycle"):
        tn.load_model(_small(tmp_path, layers=layers, arrays={}))


def test_duplicate_names(tmp_path):
    layers = [{"name": "a", "type": "Flatten"}, {"name": "a", "type": "Flatten"}]
    with pytest.raises(ModelError, match="duplicate"):
        tn.Model((4, 4, 1), layers, {})


def test_softmax_on_hidden_layer(tmp_path):
    layers = [{"name": "flat", "type": "Flatten"}, {"name": "h", "type": "Dense", "units": 3, "activation": "softmax"},
              {"name": "out", "type": "Dense", "units": 2}]
    weights = {"h": {"kernel": np.ones((16, 3)), "bias": np.zeros(3)},
               "out": {"kernel": np.ones((3, 2)), "bias": np.zeros(2)}}
    with pytest.raises(ModelError, match="only allowed on the output layer"):
        tn.Model((4, 4, 1), layers, weights)


@pytest.mark.parametrize("arrays, message", [
    ({"out/bias": np.zeros(3, np.float32)}, "missing weights 'out/kernel'"),
    ({"out/kernel": np.ones((15, 3), np.float32), "out/bias": np.zeros(3, np.float32)}, r"expected \(16, 3\)"),
    ({"out/kernel": np.ones((16, 3), np.float32)}, "missing weights 'out/bias'"),
    ({"out/kernel": np.ones((16, 3), np.float32), "out/bias": np.zeros(4, np.float32)}, "bias has shape"),
    ({"out/kernel": np.full((16, 3), np.nan, np.float32), "out/bias": np.zeros(3, np.float32)}, "NaN or Inf"),
    ({"out/kernel": np.ones((16, 3), np.float32), "out/bias": np.zeros(3, np.float32),
      "ghost/kernel": np.ones(2, np.float32)}, "unknown layer"),
    ({"out/kernel": np.array([["a"] * 3] * 16), "out/bias": np.zeros(3, np.float32)}, "non-numeric"),
    ({"out/kernel": np.ones((16, 3), np.float32), "out/bias": np.zeros(3, np.float32),
      "stray": np.ones(1)}, "unexpected array 'stray'"),
])
def test_bad_weights_are_named(tmp_path, arrays, message):
    with pytest.raises(ModelError, match=message):
        tn.load_model(_small(tmp_path, arrays=arrays))


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        tn.load_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="model.json"):
        tn.load_model(tmp_path)


def test_bad_json_and_header(tmp_path):
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        tn.load_model(tmp_path)
    with pytest.raises(ModelError, match="'format' must be"):
        tn.load_model(_small(tmp_path, format="keras"))
    with pytest.raises(ModelError, match="unsupported version"):
        tn.load_model(_small(tmp_path, version=7))
    with pytest.raises(ModelError, match="input_shape"):
        tn.load_model(_small(tmp_path, input_shape=[4, 0, 1]))


def test_truncated_weights_file(tmp_path):
    path = _small(tmp_path)
    data = (path / "weights.npz").read_bytes()
    (path / "weights.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="could not be read"):
        tn.load_model(path)


def test_a_window_far_larger_than_its_input_is_refused_not_allocated():
    """Found by the fuzzer: dilation 28121 with 'same' padding asked for a 23.6 GiB padded input."""
    from ttfs_native.model.layers import ModelError
    layer = {"name": "c", "type": "Conv2D", "filters": 1, "kernel_size": 3, "padding": "same",
             "dilation_rate": 28121}
    with pytest.raises(ModelError, match="far beyond the input"):
        tn.Model((5, 5, 1), [layer], {"c": {"kernel": np.ones((3, 3, 1, 1), np.float32), "bias": None}})
