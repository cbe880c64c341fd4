"""The neutral model folder (model.json + weights.npz) and the in-memory Model."""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .ops import apply_layer
from .layers import (WEIGHTED_TYPES, LayerSpec, ModelError, expected_weight_shapes, infer_shape,
                     normalise_config)
from .settings import check_simulation, describe_simulation, stored_simulation
from .window_settings import check_window_settings

FORMAT_NAME = "ttfs-native-model"
FORMAT_VERSION = 1
INPUT_NAME = "input"


class Model:
    """A converted network: layers in topological order plus float32 weights.

    ``weights`` maps a weighted layer's name to ``{"kernel": array, "bias":
    array or None}`` in Keras layouts. The constructor validates everything and
    raises :class:`ModelError` naming the offending layer.
    ``simulation``: the settings the folder carries for the simulator
    (settings.py; {} when none).
    """

    def __init__(self, input_shape, layers, weights, metadata=None, simulation=None):
        self.input_shape = _input_shape(input_shape)
        self.metadata = dict(metadata or {})
        self.simulation = check_simulation(simulation)
        self.layers: list[LayerSpec] = []
        shapes = {INPUT_NAME: self.input_shape}
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ModelError("model needs a non-empty list of layers")
        for i, raw in enumerate(layers):
            spec = _parse_layer(raw, i, shapes, self.layers)
            self.layers.append(spec)
            shapes[spec.name] = spec.output_shape
        self._check_graph()
        self.weights = _check_weights(self.layers, weights)
        if "window" in self.simulation:   # ttfs-window: one window per windowed layer of this model
            self.simulation["window"] = check_window_settings(self.simulation["window"], self)

    # ----------------------------------------------------------- structure
    @property
    def output_layer(self) -> LayerSpec:
        return self.layers[-1]

    @property
    def num_classes(self) -> int:
        return self.output_layer.size

    @property
    def input_size(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def num_parameters(self) -> int:
        """Weights and biases, all layers."""
        return sum(int(a.size) for w in self.weights.values() for a in w.values() if a is not None)

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(f"no layer named {name!r}")

    @property
    def spiking_layers(self) -> list:
        return [s for s in self.layers if s.is_spiking]

    def shape_of(self, name: str) -> tuple:
        return self.input_shape if name == INPUT_NAME else self.layer(name).output_shape

    def _check_graph(self):
        used = {n for spec in self.layers for n in spec.inbound}
        unused = [s.name for s in self.layers[:-1] if s.name not in used]
        if unused:
            raise ModelError(f"layer(s) {', '.join(map(repr, unused))} feed no other layer; "
                             "only the last layer may be an output")
        if INPUT_NAME not in used:
            raise ModelError("no layer reads the input")
        out = self.output_layer
        readers: dict = {}
        for spec in self.layers:
            for n in spec.inbound:
                readers.setdefault(n, []).append(spec)
        for spec in self.layers[:-1]:
            if not spec.has_activation or spec.activation == "relu":
                continue
            read_by = readers[spec.name]
            if spec.is_weighted and spec.activation == "linear" and len(read_by) == 1 and read_by[0].is_add:
                spec.merge = read_by[0].name   # a branch of that Add (SEMANTICS.md "Add")
                continue
            raise ModelError(f"layer '{spec.name}': activation '{spec.activation}' is only allowed on the "
                             f"output layer ('{out.name}')"
                             + (" or on a weighted layer read only by an Add (a residual branch)"
                                if spec.activation == "linear" else ""))

    def summary(self) -> str:
        rows = [f"input: {self.input_shape}"]
        for s in self.layers:
            clip = f", max {s.max_value:g}" if s.has_activation and s.max_value is not None else ""
            extra = f" [{s.activation}{clip}]" if s.has_activation else ""
            extra += f" (branch of {s.merge})" if s.is_branch else ""
            rows.append(f"{s.name}: {s.type} {s.output_shape}{extra} <- {', '.join(s.inbound)}")
        if self.simulation:
            rows.append(describe_simulation(self.simulation))
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Model(input_shape={self.input_shape}, layers={len(self.layers)}, classes={self.num_classes})"

    # ------------------------------------------------------------ analogue
    def ann_forward(self, x, return_all: bool = False):
        """The converted ANN's output for channels-last input ``x`` (N, *input_shape).

        ReLU on hidden weighted layers and Adds (clipped where they have a
        ``max_value``), none on residual branches, the output layer's own
        activation (softmax, relu or linear). With ``return_all`` returns a dict of every
        layer's activation.
        """
        x = check_input(self, x)
        acts = {INPUT_NAME: x}
        for spec in self.layers:
            ins = [acts[n] for n in spec.inbound]
            acts[spec.name] = apply_layer(spec, ins, self.weights.get(spec.name), activation=True)
        return acts if return_all else acts[self.output_layer.name]

    def with_output_activation(self, activation: str) -> "Model":
        """A copy whose output layer has ``activation`` (e.g. SNN Toolbox's softmax_to_relu)."""
        layers = [s.to_json() for s in self.layers]
        if "activation" not in layers[-1]:
            raise ModelError(f"output layer '{self.output_layer.name}' ({self.output_layer.type}) has no activation")
        layers[-1]["activation"] = activation
        return Model(self.input_shape, layers, self.weights, self.metadata, self.simulation)

    # -------------------------------------------------------------- saving
    def to_json(self) -> dict:
        out = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
               "input_shape": list(self.input_shape),
               "layers": [s.to_json() for s in self.layers]}
        if self.simulation:
            out["simulation"] = dict(self.simulation)
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def save(self, path) -> Path:
        return save_model(self, path)


def weight_shapes(input_shape, layers) -> dict:
    """name -> (kernel shape, bias shape or None) of every weighted layer of a
    layer list (model.json style), for building weights from scratch."""
    shapes, specs, out = {INPUT_NAME: _input_shape(input_shape)}, [], {}
    for i, raw in enumerate(layers):
        spec = _parse_layer(raw, i, shapes, specs)
        specs.append(spec)
        shapes[spec.name] = spec.output_shape
        if spec.is_weighted:
            out[spec.name] = expected_weight_shapes(spec)
    return out


def _input_shape(value) -> tuple:
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ModelError(f"'input_shape' must be a list of positive integers, got {value!r}")
    return tuple(int(v) for v in value)


def _parse_layer(raw, index: int, shapes: dict, previous: list) -> LayerSpec:
    if not isinstance(raw, dict):
        raise ModelError(f"layer #{index} must be an object, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ModelError(f"layer #{index} needs a non-empty 'name' without '/', got {name!r}")
    if name in shapes:
        raise ModelError(f"layer '{name}': duplicate name" if name != INPUT_NAME
                         else f"layer #{index}: the name 'input' is reserved for the model input")
    type_ = raw.get("type")
    config = normalise_config(name, type_, raw)
    inbound = raw.get("inbound")
    if inbound is None:
        inbound = [previous[-1].name if previous else INPUT_NAME]
    if isinstance(inbound, str):
        inbound = [inbound]
    if not isinstance(inbound, (list, tuple)) or not inbound or not all(isinstance(n, str) for n in inbound):
        raise ModelError(f"layer '{name}': 'inbound' must be a non-empty list of layer names, got {inbound!r}")
    for n in inbound:
        if n == name:
            raise ModelError(f"layer '{name}': reads its own output (cycle)")
        if n not in shapes:
            raise ModelError(f"layer '{name}': inbound layer '{n}' is not defined before it "
                             "(unknown name, or a cycle: layers must be in topological order)")
    spec = LayerSpec(name=name, type=type_, inbound=list(inbound), config=config,
                     input_shapes=[shapes[n] for n in inbound])
    spec.output_shape = infer_shape(spec)
    return spec


def _as_float32(name: str, what: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ModelError(f"layer '{name}': {what} has non-numeric dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ModelError(f"layer '{name}': {what} contains NaN or Inf")
    return arr


def _check_weights(layers: list, weights) -> dict:
    weights = dict(weights or {})
    checked = {}
    for spec in layers:
        if not spec.is_weighted:
            if spec.name in weights:
                raise ModelError(f"layer '{spec.name}': {spec.type} has no weights, but some were given")
            continue
        entry = weights.pop(spec.name, None)
        if not entry or entry.get("kernel") is None:
            raise ModelError(f"layer '{spec.name}': missing weights '{spec.name}/kernel'")
        kshape, bshape = expected_weight_shapes(spec)
        kernel = _as_float32(spec.name, "kernel", entry["kernel"])
        if kernel.shape != kshape:
            raise ModelError(f"layer '{spec.name}': kernel has shape {kernel.shape}, expected {kshape}")
        bias = entry.get("bias")
        if bshape is None:
            if bias is not None:
                raise ModelError(f"layer '{spec.name}': use_bias is false but a bias was given")
        else:
            if bias is None:
                raise ModelError(f"layer '{spec.name}': missing weights '{spec.name}/bias' (use_bias is true)")
            bias = _as_float32(spec.name, "bias", bias)
            if bias.shape != bshape:
                raise ModelError(f"layer '{spec.name}': bias has shape {bias.shape}, expected {bshape}")
        checked[spec.name] = {"kernel": kernel, "bias": bias}
    if weights:
        raise ModelError(f"weights given for unknown layer(s): {', '.join(sorted(weights))}")
    return checked


def as_host_array(x, what: str = "input") -> np.ndarray:
    """A numpy view of ``x``: numpy arrays as they are, DLPack producers (PyTorch,
    CuPy, JAX, ...) without a copy when they live in host memory."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError, ValueError) as e:
            raise ValueError(f"{what} supports DLPack but numpy cannot read it in host memory ({e}); "
                             "move it to the host (e.g. tensor.detach().cpu())") from None
    return np.asarray(x)


def check_input_shape(model: Model, shape: tuple, what: str = "input", allow_empty: bool = True):
    """Raise unless ``shape`` is (N, *input_shape) (with N > 0 unless ``allow_empty``)."""
    shape = tuple(shape)
    if shape[1:] != model.input_shape:
        expected = f"expected (N, {', '.join(map(str, model.input_shape))})"
        if shape == model.input_shape:
            raise ValueError(f"{what} has shape {shape}: add a batch axis, {expected}")
        raise ValueError(f"{what} has shape {shape}, {expected}")
    if not allow_empty and shape[0] == 0:
        raise ValueError(f"{what} has no samples (shape[0] == 0)")


def check_input(model: Model, x, what: str = "input", allow_empty: bool = True) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 (N, *input_shape) array or raise
    (also when N == 0, unless ``allow_empty``)."""
    arr = as_host_array(x, what)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{what} has unsupported dtype {arr.dtype} (expected real numbers)")
    check_input_shape(model, arr.shape, what, allow_empty)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or Inf")
    return arr


def input_range_warning(model: Model, x: np.ndarray, what: str = "input") -> str | None:
    """A warning when ``x`` lies far outside the input range the model was
    normalised on (``metadata["normalisation"]["input_range"]``), e.g. pixels
    0-255 given to a model normalised on [0, 1]; None when it does not (or the
    model records no range)."""
    record = model.metadata.get("normalisation")
    rng = record.get("input_range") if isinstance(record, dict) else None
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2) or x.size == 0:
        return None
    lo, hi = float(rng[0]), float(rng[1])
    margin = 2.0 * max(hi - lo, abs(lo), abs(hi), 1e-12)
    x_lo, x_hi = float(x.min()), float(x.max())
    if x_lo < lo - margin or x_hi > hi + margin:
        return (f"{what} spans [{x_lo:g}, {x_hi:g}] but the model was normalised on inputs in [{lo:g}, {hi:g}]; "
                f"scale the input as for training (e.g. pixels / 255), or accuracy suffers")
    return None


# ------------------------------------------------------------------ files
def load_model(path) -> Model:
    """Read a model folder (``model.json`` + ``weights.npz``)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    json_path, npz_path = path / "model.json", path / "weights.npz"
    if not json_path.is_file():
        raise FileNotFoundError(f"missing {json_path}")
    try:
        desc = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{json_path} is not valid JSON: {e}") from None
    if not isinstance(desc, dict):
        raise ModelError(f"{json_path} must hold a JSON object")
    if desc.get("format") != FORMAT_NAME:
        raise ModelError(f"{json_path}: 'format' must be {FORMAT_NAME!r}, got {desc.get('format')!r}")
    if desc.get("version") != FORMAT_VERSION:
        raise ModelError(f"{json_path}: unsupported version {desc.get('version')!r} (this reader knows {FORMAT_VERSION})")
    layers = desc.get("layers")
    if not npz_path.exists():
        weighted = [r.get("name") for r in layers or [] if isinstance(r, dict) and r.get("type") in WEIGHTED_TYPES]
        if weighted:
            raise FileNotFoundError(f"missing {npz_path}: it holds the weights of {', '.join(map(str, weighted))}")
    weights = _read_weights(npz_path) if npz_path.exists() else {}
    try:
        simulation = stored_simulation(desc)
    except ModelError as e:
        raise ModelError(f"{json_path}: {e}") from None
    return Model(desc.get("input_shape"), layers, weights, desc.get("metadata"), simulation)


def _read_weights(npz_path: Path) -> dict:
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ModelError(f"{npz_path} could not be read: {e}") from None
    weights: dict = {}
    for key, arr in arrays.items():
        layer, _, kind = key.rpartition("/")
        if kind not in ("kernel", "bias") or not layer:
            raise ModelError(f"{npz_path}: unexpected array {key!r} (expected '<layer>/kernel' or '<layer>/bias')")
        weights.setdefault(layer, {})[kind] = arr
    return weights


def save_model(model: Model, path) -> Path:
    """Write ``model`` as a model folder at ``path`` (created if missing)."""
    path = Path(path)
    os.makedirs(path, exist_ok=True)
    (path / "model.json").write_text(json.dumps(model.to_json(), indent=1) + "\n")
    arrays = {}
    for name, w in model.weights.items():
        arrays[f"{name}/kernel"] = w["kernel"]
        if w["bias"] is not None:
            arrays[f"{name}/bias"] = w["bias"]
    np.savez(path / "weights.npz", **arrays)
    return path
