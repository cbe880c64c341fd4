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

import numpy as np

from ..model import Model, check_input, load_model
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


def _simulate_part(sim: Simulator, item) -> dict:
    offset, x = item
    r = sim.run(x, sample_offset=offset)
    return {"counts": r.counts, "synops_t": r.synops_t, "stop_step": r.stop_step,
            "first_spike_times": r.first_spike_times, "spike_counts": r.spike_counts,
            "backend": r.backend}


class _Plan:
    """The driver's side: options checked once, worker resources, result metadata."""

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
        self.template = Simulator(self.model, **dict(self.options, backend="reference"))

    def result(self, parts: list, labels, wall: float, backend: str) -> SimulationResult:
        t = self.template
        raw = {key: np.concatenate([p[key] for p in parts]) for key in ("counts", "synops_t", "stop_step")}
        for key in ("first_spike_times", "spike_counts"):
            raw[key] = {name: np.concatenate([p[key][name] for p in parts]) for name in parts[0][key]}
        return SimulationResult.from_raw(
            raw, labels=labels, ann_ops=t.ann_ops, neurons={s.name: s.size for s in t.model.spiking_layers},
            dt=t.params.dt, backend=backend, ops_convention=t.ops_convention, wall_time=wall)


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
            x = check_input(plan.model, x, allow_empty=False)
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
        yield offset, plan.result([part], labels_of.pop(offset, None), now - start, part["backend"])
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
    x = check_input(plan.model, x, allow_empty=False)
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
    return plan.result(parts, labels, time.perf_counter() - start, parts[0]["backend"])
