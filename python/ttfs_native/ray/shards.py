"""Inputs larger than memory: read in chunks, simulated on Ray, results written as shards.

Input: a directory of ``.npy`` files (each (n_i, *input_shape), read in file
name order: zero-pad the numbers), or a Parquet file or directory of Parquet
files with one sample per row (a tensor column as Ray Data writes it, or a
list column of the input's values, channels-last, flattened or not).

Output: a directory with ``part-00000.npz``, ``part-00001.npz``, ... (one per
chunk of consecutive samples, each with the arrays of the CLI's result.npz
for its samples; ``accuracy_t`` there is that chunk's) and ``index.json``
naming each part's first sample and sample count, and the totals. The parts
concatenated in order equal the result.npz of one in-process run.

The driver reads the input in chunks (``.npy`` memory-mapped, Parquet a
record batch at a time), a few chunks ahead of the workers, and numbers the
samples: a softmax output's random stream is keyed by the sample's index in
the whole input, which Ray Data's batches do not carry; and Ray Data's read
tasks would wait for the CPUs the simulating actors hold.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..model import Model, load_model
from .cluster import require_ray
from .simulate import simulate_chunks

DEFAULT_CHUNK = 1024


def shard_kind(path) -> str | None:
    """``"npy"`` or ``"parquet"`` for a shard input, None for a single .npy file."""
    p = Path(path)
    if p.is_file():
        return "parquet" if p.suffix == ".parquet" else None
    if not p.is_dir():
        raise FileNotFoundError(f"input not found: {p}")
    if any(p.glob("*.npy")):
        return "npy"
    if any(p.glob("*.parquet")):
        return "parquet"
    raise ValueError(f"input directory {p} holds no .npy or .parquet files")


def _npy_chunks(files, chunk_size: int):
    for f in files:
        try:
            a = np.load(f, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"input shard {f} could not be read as .npy: {e}") from None
        if a.ndim == 0:
            raise ValueError(f"input shard {f} holds a scalar, not (n, *input_shape)")
        for lo in range(0, a.shape[0], chunk_size):
            yield np.array(a[lo:lo + chunk_size]), None


def _column_to_numpy(column) -> np.ndarray:
    """A Parquet column of (nested) lists or of Ray's tensor type as (n, -1) or (n, *shape)."""
    import pyarrow as pa
    if isinstance(column.type, pa.ExtensionType):
        return np.asarray(column.to_numpy(zero_copy_only=False))  # Ray Data's tensor columns
    values, n = column, len(column)
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) \
            or pa.types.is_fixed_size_list(values.type):
        values = values.flatten()
    values = values.to_numpy(zero_copy_only=False)
    if n and values.size % n:
        raise ValueError("the rows of the sample column hold different numbers of values")
    return values.reshape(n, -1) if n else values


def _parquet_chunks(files, chunk_size: int, input_column: str, label_column: str | None):
    require_ray().data  # registers Ray Data's tensor types with pyarrow
    import pyarrow.parquet as pq
    columns = [input_column] + ([label_column] if label_column else [])
    for f in files:
        pf = pq.ParquetFile(f)
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise ValueError(f"{f} has no column {', '.join(map(repr, missing))} (it has "
                             f"{', '.join(pf.schema_arrow.names)})")
        for batch in pf.iter_batches(batch_size=chunk_size, columns=columns):
            labels = batch.column(label_column).to_numpy(zero_copy_only=False) if label_column else None
            yield _column_to_numpy(batch.column(input_column)), labels


def _chunks(path, kind: str, chunk_size: int, input_column: str, label_column: str | None, limit):
    """(x, labels) chunks of consecutive samples of the shard input, at most ``limit`` samples."""
    p = Path(path)
    if kind == "npy":
        chunks = _npy_chunks(sorted(p.glob("*.npy")), chunk_size)
    else:
        files = [p] if p.is_file() else sorted(p.glob("*.parquet"))
        chunks = _parquet_chunks(files, chunk_size, input_column, label_column)
    left = limit
    for x, labels in chunks:
        if left is not None:
            x, labels = x[:left], None if labels is None else labels[:left]
            left -= x.shape[0]
        if x.shape[0]:
            yield x, labels
        if left == 0:
            return


def _as_samples(x: np.ndarray, input_shape) -> np.ndarray:
    """Rows of flattened samples (n, prod(input_shape)) as (n, *input_shape)."""
    if x.ndim == 2 and len(input_shape) > 1 and x.shape[1] == int(np.prod(input_shape)):
        return x.reshape((x.shape[0],) + tuple(input_shape))
    return x


def simulate_shards(model, path, out_dir, *, chunk_size: int | None = None, input_column: str = "image",
                    label_column: str | None = None, limit: int | None = None, workers: int | None = None,
                    num_cpus: float = 1, num_gpus: float = 0, **simulator_options) -> dict:
    """Simulate the shard input ``path`` on Ray workers (Ray connected) and
    write the result shards into ``out_dir`` (created; must be empty). Returns
    the contents of ``index.json``. ``limit``: only the first samples."""
    model = model if isinstance(model, Model) else load_model(model)
    kind = shard_kind(path)
    if kind is None:
        raise ValueError(f"{path} is a single file, not a shard input (a directory of .npy files or Parquet)")
    if kind == "npy" and label_column:
        raise ValueError("a directory of .npy shards has no label column; give labels in a Parquet input")
    chunk_size = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output {out} exists and is not an empty directory")
    chunks = ((_as_samples(x, model.input_shape), labels)
              for x, labels in _chunks(path, kind, chunk_size, input_column, label_column, limit))
    out.mkdir(parents=True, exist_ok=True)
    index = {"samples": 0, "parts": []}
    correct = 0
    start = time.perf_counter()
    for i, (first, result) in enumerate(simulate_chunks(model, chunks, workers=workers, num_cpus=num_cpus,
                                                        num_gpus=num_gpus, **simulator_options)):
        name = f"part-{i:05d}.npz"
        result.to_npz(out / name)
        index["parts"].append({"file": name, "first_sample": first, "samples": result.num_samples})
        index["samples"] += result.num_samples
        if result.labels is not None:
            correct += int(np.sum(result.predictions == result.labels))
    if not index["parts"]:
        raise ValueError(f"the input {path} holds no samples")
    index["wall_time"] = time.perf_counter() - start
    if label_column:
        index["accuracy"] = correct / index["samples"]
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index
