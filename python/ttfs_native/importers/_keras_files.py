"""Reading Keras model files without Keras: the config JSON and the weight arrays.

* ``.keras`` (Keras 3): a zip with ``config.json`` and ``model.weights.h5``;
  a layer's variables are ``layers/<path>/vars/0, 1, ...``. The path is
  derived from the class name (``conv2d``, ``conv2d_1``, ...), not from the
  layer name; recent Keras versions also store the layer name in the
  ``vars`` group's ``name`` attribute, which is used when present.
* ``.h5`` (Keras 2 / tf.keras, or Keras 3's legacy format): the model config
  JSON in the root attribute ``model_config``, weights under
  ``model_weights/<layer>/`` listed in order by the ``weight_names`` attribute.

Either way a layer's arrays come back in Keras's own order (kernel, bias;
gamma, beta, moving mean, moving variance).

Only the model file is read. The zip's members are read into memory, never
extracted, and an HDF5 file that would make HDF5 open other files is refused
as a whole: external links, virtual datasets (their sources are other files)
and datasets kept in external files (HDF5 external storage, which would read
any local file into the weights). Soft links stay inside the file and are
allowed.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ..model.layers import ModelError


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("from_keras needs the 'h5py' package: pip install ttfs-native[keras] "
                          "(or pip install h5py)") from None
    return h5py


def _check_self_contained(f, where: str) -> None:
    """Raise ModelError if the open HDF5 file ``f`` refers to data outside itself."""
    h5py = _h5py()
    root = f["/"]
    seen, groups = {root.id}, [(root, "")]  # a stack, not recursion: a crafted file may nest deeply
    while groups:
        group, prefix = groups.pop()
        for name in group:  # the link names; iterating follows no link
            path = f"{prefix}{name}"
            kind = group.id.links.get_info(name.encode()).type
            if kind == h5py.h5l.TYPE_SOFT:
                continue  # a path inside this file, checked where it is hard-linked
            if kind == h5py.h5l.TYPE_EXTERNAL:
                link = group.get(name, getlink=True)
                raise ModelError(f"{where}: '{path}' is an external link to '{link.filename}' "
                                 f"('{link.path}'); links into other files are not followed")
            if kind != h5py.h5l.TYPE_HARD:
                raise ModelError(f"{where}: '{path}' is a user-defined link; only hard and soft "
                                 "links are followed")
            obj = group[name]
            if obj.id in seen:
                continue
            seen.add(obj.id)
            if isinstance(obj, h5py.Group):
                groups.append((obj, f"{path}/"))
            elif isinstance(obj, h5py.Dataset):
                _check_dataset(obj, path, where)

def _check_dataset(dset, path: str, where: str) -> None:
    if dset.is_virtual:
        raise ModelError(f"{where}: dataset '{path}' is a virtual dataset (its data come from other "
                         "files); only data stored in the model file are read")
    dcpl = dset.id.get_create_plist()
    if dcpl.get_external_count():
        files = ", ".join(repr(_text(dcpl.get_external(i)[0])) for i in range(dcpl.get_external_count()))
        raise ModelError(f"{where}: dataset '{path}' keeps its data in an external file ({files}); "
                         "only data stored in the model file are read")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_keras_file(path: Path):
    """Return (model config dict, {layer name: [arrays]}, metadata dict)."""
    if not path.is_file():
        raise FileNotFoundError(f"Keras model file not found: {path}")
    if zipfile.is_zipfile(path):
        return _read_keras_v3(path)
    if path.suffix.lower() == ".keras":
        raise ModelError(f"{path} is not a zip archive, so not a Keras 3 '.keras' file")
    return _read_h5(path)


def _read_keras_v3(path: Path):
    h5py = _h5py()
    with zipfile.ZipFile(path) as archive:  # members read into memory: nothing is extracted
        names = set(archive.namelist())
        if "config.json" not in names:
            raise ModelError(f"{path}: no config.json inside; not a Keras 3 model archive")
        if "model.weights.h5" not in names:
            raise ModelError(f"{path}: no model.weights.h5 inside (found {sorted(names)}); "
                             "sharded or npz weights are not supported")
        config = json.loads(archive.read("config.json"))
        meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
        weights_bytes = archive.read("model.weights.h5")
    metadata = {"source": "keras", "file": path.name}
    if "keras_version" in meta:
        metadata["keras_version"] = meta["keras_version"]
    with h5py.File(io.BytesIO(weights_bytes), "r") as f:
        _check_self_contained(f, f"{path}: model.weights.h5")
        weights = _weights_v3(f, config)
    return config, weights, metadata


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _saved_paths(config: dict) -> dict:
    """Keras 3 weight-file path of each layer -> layer name (for files without name attributes)."""
    layers = config.get("config", {}).get("layers", [])
    sequential = config.get("class_name") == "Sequential"
    used, paths = {}, {}
    for layer in layers:
        if sequential and layer.get("class_name") == "InputLayer":
            continue  # a Sequential model does not list its InputLayer among its layers
        base = _snake_case(layer.get("class_name", ""))
        used[base] = used.get(base, -1) + 1
        path = base if used[base] == 0 else f"{base}_{used[base]}"
        paths[path] = layer.get("config", {}).get("name", layer.get("name"))
    return paths


def _weights_v3(f, config: dict) -> dict:
    if "layers" not in f:
        return {}
    by_path = _saved_paths(config)
    weights = {}
    for path, group in f["layers"].items():
        variables = group.get("vars")
        if variables is None:
            continue
        name = _text(variables.attrs["name"]) if "name" in variables.attrs else by_path.get(path)
        if name is None:
            raise ModelError(f"weights group 'layers/{path}' matches no layer of the config")
        weights[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return weights


def _read_h5(path: Path):
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelError(f"{path} is neither a Keras 3 '.keras' zip nor a readable HDF5 file: {e}") from None
    with f:
        _check_self_contained(f, str(path))
        if "model_config" not in f.attrs:
            raise ModelError(f"{path} has no 'model_config' attribute: it holds weights only "
                             "(saved with save_weights?); save the whole model instead")
        config = json.loads(_text(f.attrs["model_config"]))
        metadata = {"source": "keras", "file": path.name}
        for key in ("keras_version", "backend"):
            if key in f.attrs:
                metadata[key] = _text(f.attrs[key])
        group = f["model_weights"] if "model_weights" in f else f
        weights = {}
        for name, layer_group in group.items():
            if not isinstance(layer_group, h5py.Group):
                continue
            names = [_text(n) for n in layer_group.attrs.get("weight_names", [])]
            missing = [n for n in names if n not in layer_group]
            if missing:
                raise ModelError(f"{path}: layer '{name}' lists weights {missing} that the file does not hold "
                                 "(a damaged or hand-edited file?)")
            weights[name] = [np.asarray(layer_group[n]) for n in names]
    return config, weights, metadata
