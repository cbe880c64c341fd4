"""Keras importer: .keras and .h5 files convert to networks computing Keras's outputs.

The fixtures in tests/data/import/ come from tests/fixtures/make_import_fixtures.py
(Keras 3); these tests need only numpy, h5py and pytest.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from ttfs_native.importers import from_keras  # noqa: E402
from ttfs_native.model.layers import ModelError  # noqa: E402
from ttfs_native.model import load_model  # noqa: E402

DATA = Path(__file__).parent / "data" / "import"
FIXTURES = ["keras_seq_cnn", "keras_func_concat", "keras_depthwise_gap", "keras_upsample_relu6",
            "keras_conv1d", "keras_conv1d_branches"]
TOLERANCE = 1e-4


def reference(name: str):
    with np.load(DATA / f"{name}.npz") as d:
        return d["x"], d["y"]


def assert_matches(model, name: str):
    x, y = reference(name)
    assert np.abs(model.ann_forward(x) - y).max() <= TOLERANCE


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", FIXTURES)
def test_converted_network_matches_keras_output(name, suffix):
    assert_matches(from_keras(DATA / f"{name}{suffix}"), name)


@pytest.mark.parametrize("name", FIXTURES)
def test_saved_folder_reloads_to_identical_outputs(name, tmp_path):
    x, _ = reference(name)
    model = from_keras(DATA / f"{name}.keras")
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").ann_forward(x), model.ann_forward(x))


def test_sequential_folds_batchnorm_merges_activations_and_drops_dropout():
    model = from_keras(DATA / "keras_seq_cnn.keras")
    assert [(s.name, s.type, s.activation if s.is_weighted else None) for s in model.layers] == [
        ("conv2d", "Conv2D", "relu"), ("average_pooling2d", "AveragePooling2D", None),
        ("conv2d_1", "Conv2D", "relu"), ("max_pooling2d", "MaxPooling2D", None),
        ("flatten", "Flatten", None), ("dense", "Dense", "relu"), ("dense_1", "Dense", "softmax")]
    # Conv2D(use_bias=False) followed by batch norm gains the folded bias.
    assert model.layer("conv2d").config["use_bias"] is True


def test_global_average_pooling_becomes_pool_and_flatten():
    model = from_keras(DATA / "keras_depthwise_gap.keras")
    pool, flat = model.layers[-3], model.layers[-2]
    assert (pool.type, pool.config["pool_size"], pool.output_shape) == ("AveragePooling2D", (4, 4), (1, 1, 5))
    assert (flat.type, flat.output_shape) == ("Flatten", (5,))
    assert model.layer("depthwise_conv2d").config["depth_multiplier"] == 2


def test_metadata_names_the_source():
    model = from_keras(DATA / "keras_func_concat.h5")
    assert model.metadata["source"] == "keras" and model.metadata["file"] == "keras_func_concat.h5"


# ------------------------------------------------------- rewritten files
def rewrite_keras(src: Path, dst: Path, config_fn=None, weights_fn=None) -> Path:
    """Copy a .keras archive, editing its config dict and/or its weights h5 file in place."""
    with zipfile.ZipFile(src) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    if config_fn:
        config = json.loads(entries["config.json"])
        config_fn(config)
        entries["config.json"] = json.dumps(config).encode()
    if weights_fn:
        buffer = io.BytesIO(entries["model.weights.h5"])
        with h5py.File(buffer, "r+") as f:
            weights_fn(f)
        entries["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(dst, "w") as archive:
        for n, data in entries.items():
            archive.writestr(n, data)
    return dst


def rewrite_h5_config(src: Path, dst: Path, config_fn) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config_fn(config)
        f.attrs["model_config"] = json.dumps(config)
    return dst


def layer_config(config: dict, name: str) -> dict:
    return next(entry for entry in config["config"]["layers"] if entry["config"].get("name") == name)


def to_keras2_layout(config: dict):
    """Rewrite a Keras 3 config in the Keras 2 (tf.keras) style."""
    c = config["config"]
    for entry in c["layers"]:
        if "batch_shape" in entry["config"]:
            entry["config"]["batch_input_shape"] = entry["config"].pop("batch_shape")
        if "inbound_nodes" in entry:
            calls = []
            for node in entry["inbound_nodes"]:
                args = node["args"][0] if isinstance(node["args"][0], list) else node["args"]
                calls.append([[a["config"]["keras_history"][0], 0, 0, {}] for a in args])
            entry["inbound_nodes"] = calls
    for key in ("input_layers", "output_layers"):
        if key in c and isinstance(c[key][0], str):
            c[key] = [c[key]]


@pytest.mark.parametrize("name", FIXTURES)
def test_keras2_style_h5_file(name, tmp_path):
    dst = rewrite_h5_config(DATA / f"{name}.h5", tmp_path / f"{name}.h5", to_keras2_layout)
    with h5py.File(dst, "r+") as f:  # Keras 2 weight names: '<layer>/kernel:0'
        for layer, group in f["model_weights"].items():
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
            if not names:
                continue
            arrays = [np.asarray(group[n]) for n in names]
            for key in list(group.keys()):
                del group[key]
            new = [f"{layer}/{n.rsplit('/', 1)[-1]}:0" for n in names]
            for n, a in zip(new, arrays):
                group.create_dataset(n, data=a)
            group.attrs["weight_names"] = np.array([n.encode() for n in new])
    assert_matches(from_keras(dst), name)


@pytest.mark.parametrize("name", FIXTURES)
def test_keras_file_without_layer_names_in_weights(name, tmp_path):
    def drop_names(f):
        for group in f["layers"].values():
            group["vars"].attrs.pop("name", None)
    assert_matches(from_keras(rewrite_keras(DATA / f"{name}.keras", tmp_path / f"{name}.keras",
                                            weights_fn=drop_names)), name)


# ------------------------------------------------------------------ errors
def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_keras(tmp_path / "nope.keras")


def test_channels_first_is_rejected_by_layer_name(tmp_path):
    def channels_first(config):
        layer_config(config, "conv2d_1")["config"]["data_format"] = "channels_first"
    with pytest.raises(ModelError, match="'conv2d_1'.*channels_first"):
        from_keras(rewrite_keras(DATA / "keras_seq_cnn.keras", tmp_path / "m.keras", channels_first))
    with pytest.raises(ModelError, match="'conv2d_1'.*channels_first"):
        from_keras(rewrite_h5_config(DATA / "keras_seq_cnn.h5", tmp_path / "m.h5", channels_first))


def test_unsupported_layers_are_all_listed(tmp_path):
    def unsupported(config):
        layer_config(config, "conv2d_1")["class_name"] = "Conv3D"
        layer_config(config, "dense")["class_name"] = "LSTM"
    with pytest.raises(ModelError, match="unsupported Keras layer") as err:
        from_keras(rewrite_keras(DATA / "keras_seq_cnn.keras", tmp_path / "m.keras", unsupported))
    assert "conv2d_1 (Conv3D)" in str(err.value) and "dense (LSTM)" in str(err.value)


def test_unsupported_activation_is_rejected(tmp_path):
    def tanh(config):
        layer_config(config, "activation")["config"]["activation"] = "tanh"
    with pytest.raises(ModelError, match="'activation'.*'tanh'"):
        from_keras(rewrite_keras(DATA / "keras_seq_cnn.keras", tmp_path / "m.keras", tanh))


def test_batchnorm_after_activated_conv_is_rejected(tmp_path):
    def relu_conv(config):
        layer_config(config, "conv2d")["config"]["activation"] = "relu"
    with pytest.raises(ModelError, match="'batch_normalization'.*must directly follow"):
        from_keras(rewrite_keras(DATA / "keras_seq_cnn.keras", tmp_path / "m.keras", relu_conv))


def test_weights_only_h5_is_rejected(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_group("dense").attrs["weight_names"] = np.array([b"dense/kernel:0"])
    with pytest.raises(ModelError, match="model_config"):
        from_keras(path)


def test_non_model_file_is_rejected(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("not a zip")
    with pytest.raises(ModelError, match="not a zip"):
        from_keras(path)
