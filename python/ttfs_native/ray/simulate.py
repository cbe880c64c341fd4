"""One simulation spread over Ray workers, with the results of one in-process run.

The input is cut into chunks of consecutive samples; each worker (a Ray actor
holding one Simulator, the model loaded once) runs a chunk with the chunk's
``sample_offset``, so a softmax output draws the same random numbers as in one
run (SEMANTICS.md: the stream is keyed by the sample's index in the whole
input). The engines are deterministic per sample, so every per-sample array
is the same whatever the chunks; the chunks come back in sample order and are
concatenated before ``accuracy_t`` is computed, exactly as in one run.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ..model import Model, check_input, load_model
from ..model.model import input_range_warning
from ..simulation import SimulationResult, Simulator
from ..simulation.simulator import check_labels
from .cluster import default_workers, map_ordered

MAX_CHUNK = 1024


def worker_backend(backend: str, num_gpus: float) -> str:
    """The backend of a worker: ``"auto"`` means CUDA exactly when the worker has a GPU."""
    if backend == "auto":
        return "cuda" if num_gpus else "cpu"
    return backend


def _make_simulator(model, options: dict) -> Simulator:
    return Simulator(model, **options)


def _simulate_part(sim: Simulator, item) -> SimulationResult:
    offset, x = item
    return sim.run(x, sample_offset=offset)


class _Plan:
    """The driver's side: the model, the options (checked once), worker resources."""

    def __init__(self, model, num_cpus: float, num_gpus: float, options: dict):
        if isinstance(model, Model):
            self.model = model
        else:
            self.model = load_model(model)
        if options.get("spike_times_on_device"):
            raise ValueError("spike_times_on_device does not apply on Ray: results come back to the host")
        backend = options.get("backend", "auto")
        if backend == "cuda" and not num_gpus:
            num_gpus = 1
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.options = dict(options, backend=worker_backend(backend, num_gpus))
        if self.options.get("num_threads") is None and num_cpus >= 1:
            self.options["num_threads"] = int(num_cpus)
        # Checks every option here, before any worker starts (the reference
        # backend builds no engine, so this is cheap).
        Simulator(self.model, **dict(self.options, backend="reference"))
        self._warned = False

    def check(self, x) -> np.ndarray:
        """``x`` as the Simulator takes it; the warning of an input outside the
        normalisation range is given here, once (the workers' go to their logs)."""
        x = check_input(self.model, x, allow_empty=False)
        warning = None if self._warned else input_range_warning(self.model, x)
        if warning:
            self._warned = True
            warnings.warn(warning, stacklevel=4)
        return x


def simulate_chunks(model, chunks, *, workers: int | None = None, num_cpus: float = 1, num_gpus: float = 0,
                    **simulator_options):
    """Yield ``(first_sample, SimulationResult)`` for each ``(x, labels)`` of
    ``chunks`` (labels may be None), in order, simulated on Ray workers.

    ``first_sample`` is the chunk's index in the whole stream, which the
    simulation is keyed by; ``chunks`` is read lazily, a few chunks ahead of
    the workers, so the stream may be larger than memory. Ray must be connected
    (``ray.init`` or :func:`ttfs_native.ray.connect`). ``workers``: actors
    (default: as many as the cluster's CPUs, or GPUs, hold); each takes
    ``num_cpus`` CPUs (its CPU threads) and ``num_gpus`` GPUs (backend
    ``"auto"`` then means ``"cuda"``). ``simulator_options``: as :class:`Simulator`.
    """
    plan = _Plan(model, num_cpus, num_gpus, simulator_options)
    workers = workers or default_workers(plan.num_cpus, plan.num_gpus)
    labels_of = {}
    offsets = []

    def items():
        offset = 0
        for x, labels in chunks:
            x = plan.check(x)
            if labels is not None:
                labels_of[offset] = check_labels(labels, x.shape[0], plan.model.num_classes)
            offsets.append(offset)
            yield offset, x
            offset += x.shape[0]

    start = time.perf_counter()
    for i, part in enumerate(map_ordered(_simulate_part, items(), workers=workers, setup=_make_simulator,
                                         setup_args=(plan.model, plan.options), num_cpus=plan.num_cpus,
                                         num_gpus=plan.num_gpus)):
        offset = offsets[i]
        now = time.perf_counter()
        yield offset, SimulationResult.concatenate([part], labels_of.pop(offset, None), now - start)
        start = now


def simulate(model, x, labels=None, *, workers: int | None = None, chunk_size: int | None = None,
             num_cpus: float = 1, num_gpus: float = 0, **simulator_options) -> SimulationResult:
    """``Simulator(model, **simulator_options).run(x, labels)``, spread over Ray
    workers in chunks of ``chunk_size`` samples (default: about four chunks per
    worker, at most 1024 samples): every result array is identical to the
    in-process run's, whatever ``workers`` and ``chunk_size``. Ray must be
    connected; ``workers``, ``num_cpus``, ``num_gpus`` as :func:`simulate_chunks`.
    """
    plan = _Plan(model, num_cpus, num_gpus, simulator_options)
    workers = workers or default_workers(plan.num_cpus, plan.num_gpus)
    x = plan.check(x)
    n = x.shape[0]
    if labels is not None:
        labels = check_labels(labels, n, plan.model.num_classes)
    if chunk_size is None:
        chunk_size = min(MAX_CHUNK, math.ceil(n / (4 * workers)))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    start = time.perf_counter()
    items = ((lo, x[lo:lo + chunk_size]) for lo in range(0, n, chunk_size))
    parts = list(map_ordered(_simulate_part, items, workers=workers, setup=_make_simulator,
                             setup_args=(plan.model, plan.options), num_cpus=plan.num_cpus,
                             num_gpus=plan.num_gpus))
    return SimulationResult.concatenate(parts, labels, time.perf_counter() - start)
