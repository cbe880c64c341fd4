"""Reading ONNX files: the graph, and its external data from the model's folder only.

ONNX may keep tensors in other files (``data_location`` EXTERNAL, a
``location`` relative to the model's folder, an ``offset`` and a
``length``). They are read here rather than by onnx's loader, under one rule
that does not depend on the onnx version: the location must be a relative
path naming a regular file that is still inside the model's folder once
every '..' and symlink is resolved, and the bytes must lie within that file.
A ModelProto handed over in memory has no folder, so external data it has
not loaded are refused (otherwise onnx would read them from the current
directory).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model.layers import ModelError


def load_onnx(path: Path):
    """The ModelProto of an ONNX file, with its external data read into it."""
    import onnx
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError types
        raise ModelError(f"{path} is not a readable ONNX model: {e}") from None
    folder = path.parent.resolve()
    for tensor, what in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor.raw_data = _read_external(tensor, f"{path.name}: {what}", folder)
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return proto


def check_no_external_data(proto) -> None:
    """Refuse a ModelProto whose external data were not loaded."""
    import onnx
    for tensor, what in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = _external_info(tensor).get("location", "")
            raise ModelError(f"{what} keeps its data in the external file '{location}', which was not "
                             "loaded: pass the .onnx file's path instead (external data are read from "
                             "the model's folder)")


def _tensors(proto):
    """(TensorProto, description) of every tensor an initializer or node attribute holds,
    in the graph, its subgraphs and the model's functions."""
    def in_nodes(nodes):
        for node in nodes:
            for a in node.attribute:
                where = f"attribute '{a.name}' of node '{node.name or node.op_type}'"
                if a.HasField("t"):
                    yield a.t, where
                yield from ((t, where) for t in a.tensors)
                for graph in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    yield from in_graph(graph)

    def in_graph(graph):
        yield from ((t, f"initializer '{t.name}'") for t in graph.initializer)
        yield from in_nodes(graph.node)

    yield from in_graph(proto.graph)
    for function in proto.functions:
        yield from in_nodes(function.node)


def _external_info(tensor) -> dict:
    return {entry.key: entry.value for entry in tensor.external_data}


def _read_external(tensor, what: str, folder: Path) -> bytes:
    info = _external_info(tensor)
    location = info.get("location", "")
    if not location:
        raise ModelError(f"{what} is marked as external data but names no file")
    if os.path.isabs(location):
        raise ModelError(f"{what}: its external data location '{location}' is an absolute path; "
                         "external data are read only from files inside the model's folder")
    try:
        target = (folder / location).resolve()
        offset, length = int(info.get("offset", 0)), info.get("length")
        length = None if length is None else int(length)
    except (OSError, ValueError) as e:
        raise ModelError(f"{what}: bad external data entry {info}: {e}") from None
    if not target.is_relative_to(folder):
        raise ModelError(f"{what}: its external data '{location}' resolves to {target}, outside the "
                         f"model's folder {folder}; external data are read only from files inside it")
    if not target.is_file():
        problem = "not a regular file" if target.exists() else "missing"
        raise ModelError(f"{what}: its external data file '{location}' is {problem}")
    with open(target, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        end = size if length is None else offset + length
        if offset < 0 or end < offset or end > size:
            raise ModelError(f"{what}: external data at bytes {offset}..{end} of '{location}' lie "
                             f"outside the file ({size} bytes)")
        f.seek(offset)
        data = f.read(end - offset)
    expected = _byte_count(tensor)
    if expected is not None and len(data) != expected:
        raise ModelError(f"{what}: {len(data)} bytes of external data in '{location}', but its "
                         f"shape {tuple(tensor.dims)} needs {expected} bytes")
    return data


def _byte_count(tensor):
    """Bytes of a tensor of fixed-size elements (None for packed 2- and 4-bit types and strings)."""
    import onnx
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, ValueError, TypeError):  # an undefined or unknown element type
        return None
    packed = {getattr(onnx.TensorProto, n, None) for n in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")}
    return None if tensor.data_type in packed else itemsize * int(np.prod(tensor.dims, dtype=np.int64))
