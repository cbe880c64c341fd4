"""Importers read the model file and nothing else.

Crafted files built in tmp_path: HDF5 datasets stored in external files,
virtual datasets and external links (.h5 and .keras), and ONNX external data
pointing outside the model's folder (absolute path, '..', symlink) are
refused with a ModelError naming the tensor and why; through the CLI, one
line on stderr, exit 2 and nothing written. External data inside the folder
still converts, to the network the embedded file gives.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import ttfs_native as tn  # noqa: E402
from ttfs_native.importers import from_keras, from_onnx  # noqa: E402
from ttfs_native.model.layers import ModelError  # noqa: E402

PYTHON_DIR = Path(tn.__file__).resolve().parent.parent
RNG = np.random.default_rng(5)
KERNEL = RNG.normal(size=(4, 3)).astype(np.float32)  # (features, units), Keras layout
BIAS = np.array([0.1, -0.2, 0.3], np.float32)


@pytest.fixture
def secret(tmp_path) -> Path:
    """A local file the model must never read: exactly the kernel's size, so a
    reader that follows the reference gets a well-shaped array out of it."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(1, 13, dtype=np.float32).tobytes())
    return path


def run_cli(*args, cwd=None):
    path = [str(PYTHON_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run([sys.executable, "-m", "ttfs_native", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def assert_cli_refuses(model_path: Path, tmp_path: Path, why: str):
    x = tmp_path / "calibration.npy"
    np.save(x, RNG.random((8, 4), dtype=np.float32))
    out = tmp_path / "converted"
    proc = run_cli("convert", model_path, "--calibration", x, "--out", out, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert why in lines[0]
    assert not out.exists()


# ------------------------------------------------------------------ Keras
def _dense_config() -> dict:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "input_layer"}},
              {"class_name": "Dense", "config": {"name": "dense", "units": 3, "activation": "relu",
                                                 "use_bias": True}}]
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}


def _write_dense_group(group, kernel_fn):
    """The kernel via kernel_fn(group, name) (which may craft it), the bias as plain data."""
    kernel_fn(group, "kernel")
    group.create_dataset("bias", data=BIAS)


def plain_kernel(group, name):
    group.create_dataset(name, data=KERNEL)


def write_h5(path: Path, kernel_fn=plain_kernel) -> Path:
    """A Keras 2 style .h5: config in the root attribute, weights under model_weights/."""
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(_dense_config())
        layer = f.create_group("model_weights/dense")
        layer.attrs["weight_names"] = np.array([b"dense/kernel", b"dense/bias"])
        _write_dense_group(layer.create_group("dense"), kernel_fn)
    return path


def write_keras(path: Path, kernel_fn=plain_kernel) -> Path:
    """A Keras 3 .keras zip: config.json and model.weights.h5 (layers/dense/vars/0, 1)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        variables = f.create_group("layers/dense/vars")
        kernel_fn(variables, "0")
        variables.create_dataset("1", data=BIAS)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(_dense_config()))
        archive.writestr("model.weights.h5", buffer.getvalue())
    return path


def external_storage(secret: Path):
    def kernel(group, name):
        group.create_dataset(name, shape=KERNEL.shape, dtype=np.float32,
                             external=[(str(secret), 0, KERNEL.nbytes)])
    return kernel


def virtual_dataset(source: Path):
    def kernel(group, name):
        layout = h5py.VirtualLayout(shape=KERNEL.shape, dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(source), "data", shape=KERNEL.shape)
        group.create_virtual_dataset(name, layout)
    return kernel


def external_link(target: Path):
    def kernel(group, name):
        group[name] = h5py.ExternalLink(str(target), "/data")
    return kernel


def other_file(tmp_path: Path) -> Path:
    """Another HDF5 file holding a kernel-shaped dataset '/data'."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.full(KERNEL.shape, 7.0, np.float32))
    return path


@pytest.mark.parametrize("writer", [write_h5, write_keras])
def test_plain_keras_files_still_convert(writer, tmp_path):
    model = from_keras(writer(tmp_path / f"net{'.h5' if writer is write_h5 else '.keras'}"))
    np.testing.assert_array_equal(model.weights["dense"]["kernel"], KERNEL)


def test_soft_link_inside_the_file_is_read(tmp_path):
    def kernel(group, name):
        group.file.create_dataset("/elsewhere", data=KERNEL)
        group[name] = h5py.SoftLink("/elsewhere")
    model = from_keras(write_h5(tmp_path / "net.h5", kernel))
    np.testing.assert_array_equal(model.weights["dense"]["kernel"], KERNEL)


CRAFTED = {
    "external storage": (lambda tmp, secret: external_storage(secret), "external file"),
    "virtual dataset": (lambda tmp, secret: virtual_dataset(other_file(tmp)), "virtual dataset"),
    "external link": (lambda tmp, secret: external_link(other_file(tmp)), "external link"),
}


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_keras_file_reaching_outside_is_refused(kind, suffix, tmp_path, secret):
    make, why = CRAFTED[kind]
    writer = write_h5 if suffix == ".h5" else write_keras
    path = writer(tmp_path / f"net{suffix}", make(tmp_path, secret))
    with pytest.raises(ModelError, match=why) as info:
        from_keras(path)
    assert "kernel" in str(info.value) or "vars/0" in str(info.value)  # names the dataset
    assert_cli_refuses(path, tmp_path, why)


def test_external_storage_refused_even_where_unused(tmp_path, secret):
    # A dataset no layer lists is still refused: the file is checked as a whole.
    def kernel(group, name):
        plain_kernel(group, name)
        group.create_dataset("spare", shape=KERNEL.shape, dtype=np.float32,
                             external=[(str(secret), 0, KERNEL.nbytes)])
    with pytest.raises(ModelError, match="model_weights/dense/dense/spare.*external file"):
        from_keras(write_h5(tmp_path / "net.h5", kernel))


# ------------------------------------------------------------------- ONNX
W = RNG.normal(size=(3, 4)).astype(np.float32)  # Gemm with transB: (out, in)


def onnx_model():
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["h"], name="fc", transB=1),
         helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(BIAS, "B")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def save_external(folder: Path, location: str | None = None) -> Path:
    """Save the model with every initializer in one external file ('weights.bin'); with
    ``location``, W's entry is then rewritten to point there."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "net.onnx"
    onnx.save_model(onnx_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    if location is not None:
        proto = onnx.load(str(path), load_external_data=False)
        w = next(t for t in proto.graph.initializer if t.name == "W")
        del w.external_data[:]
        w.external_data.add(key="location", value=location)
        w.external_data.add(key="length", value=str(W.nbytes))
        onnx.save_model(proto, str(path))
    return path


def test_external_data_inside_the_folder_converts_and_simulates_identically(tmp_path):
    embedded = tmp_path / "embedded.onnx"
    onnx.save_model(onnx_model(), str(embedded))
    external = save_external(tmp_path / "ext")
    assert (tmp_path / "ext" / "weights.bin").is_file()
    a, b = from_onnx(embedded), from_onnx(external)
    for layer in a.weights:
        for key in a.weights[layer]:
            np.testing.assert_array_equal(a.weights[layer][key], b.weights[layer][key])
    x = RNG.random((6, 4), dtype=np.float32)
    ra = tn.Simulator(a, duration=16, backend="cpu").run(x)
    rb = tn.Simulator(b, duration=16, backend="cpu").run(x)
    np.testing.assert_array_equal(ra.predictions, rb.predictions)
    np.testing.assert_array_equal(ra.counts, rb.counts)
    np.testing.assert_array_equal(ra.synops_t, rb.synops_t)


def test_external_data_in_a_subfolder_and_through_an_inner_symlink_is_read(tmp_path):
    folder = tmp_path / "m"
    save_external(folder)
    (folder / "data").mkdir()
    os.replace(folder / "weights.bin", folder / "data" / "weights.bin")
    (folder / "alias.bin").symlink_to("data/weights.bin")
    for location in ("data/weights.bin", "alias.bin", "data/../data/weights.bin"):
        proto = onnx.load(str(folder / "net.onnx"), load_external_data=False)
        for t in proto.graph.initializer:
            next(e for e in t.external_data if e.key == "location").value = location
        onnx.save_model(proto, str(folder / "net.onnx"))
        np.testing.assert_array_equal(from_onnx(folder / "net.onnx").weights["fc"]["kernel"], W.T)


def escaping_model(kind: str, tmp_path: Path, secret: Path) -> Path:
    folder = tmp_path / "model"
    if kind == "absolute":
        return save_external(folder, str(secret))
    if kind == "dotdot":
        return save_external(folder, "../secret.bin")
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    return save_external(folder, "link.bin")


ESCAPES = {"absolute": "absolute path", "dotdot": "outside the model's folder",
           "symlink": "outside the model's folder"}


@pytest.mark.parametrize("kind", sorted(ESCAPES))
def test_onnx_external_data_outside_the_folder_is_refused(kind, tmp_path, secret):
    path = escaping_model(kind, tmp_path, secret)
    with pytest.raises(ModelError, match=f"initializer 'W'.*{ESCAPES[kind]}"):
        from_onnx(path)
    assert_cli_refuses(path, tmp_path, ESCAPES[kind])


def test_external_data_that_is_not_a_regular_file_is_refused(tmp_path):
    path = save_external(tmp_path / "m", "sub")
    (tmp_path / "m" / "sub").mkdir()
    with pytest.raises(ModelError, match="initializer 'W'.*not a regular file"):
        from_onnx(path)


def test_external_data_shorter_than_the_tensor_is_refused(tmp_path):
    path = save_external(tmp_path / "m")
    (tmp_path / "m" / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ModelError, match="initializer '[WB]'.*bytes"):
        from_onnx(path)


def test_model_proto_with_unread_external_data_is_refused(tmp_path, secret, monkeypatch):
    # A relative location would otherwise be read from the current directory.
    monkeypatch.chdir(tmp_path)
    proto = onnx.load(str(save_external(tmp_path / "m", "secret.bin")), load_external_data=False)
    with pytest.raises(ModelError, match="initializer 'W'.*external.*not loaded"):
        from_onnx(proto)
    loaded = onnx.load(str(save_external(tmp_path / "ok")))  # onnx read the data: accepted
    np.testing.assert_array_equal(from_onnx(loaded).weights["fc"]["kernel"], W.T)


def test_constant_node_with_external_data_outside_the_folder_is_refused(tmp_path, secret):
    value = numpy_helper.from_array(BIAS, "bias_value")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    value.external_data.add(key="location", value="../secret.bin")
    model = onnx_model()
    model.graph.initializer.pop()  # B becomes the output of a Constant node
    model.graph.node.insert(0, helper.make_node("Constant", [], ["B"], name="bias", value=value))
    (tmp_path / "m").mkdir()
    onnx.save_model(model, str(tmp_path / "m" / "net.onnx"))
    with pytest.raises(ModelError, match="attribute 'value' of node 'bias'.*outside the model's folder"):
        from_onnx(tmp_path / "m" / "net.onnx")


def test_h5_listing_weights_it_does_not_hold_is_one_line(tmp_path):
    path = write_h5(tmp_path / "net.h5")
    with h5py.File(path, "a") as f:
        f["model_weights/dense"].attrs["weight_names"] = np.array([b"dense/kernel", b"dense/gone"])
    with pytest.raises(ModelError, match="does not hold"):
        from_keras(path)
