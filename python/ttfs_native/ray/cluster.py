"""Connecting to Ray and mapping a function over items on a pool of actors, in order.

Ray is imported only inside these functions (``import ttfs_native`` never
imports it); ``import ray`` here is absolute, so it is the Ray package, not
this subpackage.
"""
from __future__ import annotations

import collections
import logging
import contextlib
import os

INSTALL_HINT = "pip install 'ttfs-native[ray]' (or pip install 'ray[data]')"


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"this needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connect(address: str | None = "local", num_cpus: int | None = None):
    """Ray, connected for the duration of the ``with`` block.

    ``address``: ``"local"`` starts a Ray instance on this machine with
    ``num_cpus`` CPUs (default: all) and shuts it down at the end; anything else
    (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) connects to that
    cluster, and None to the one ``RAY_ADDRESS`` names. A process that has
    already called ``ray.init`` keeps its connection (and it stays open).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address == "local":
        # Workers import ttfs_native the way this process did (a source checkout
        # on PYTHONPATH included).
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def _fits(num_cpus: float, num_gpus: float):
    """(actors of this size the connected cluster holds at once, its resources)."""
    resources = require_ray().cluster_resources()
    fits = [resources.get(name, 0) / need for name, need in (("CPU", num_cpus), ("GPU", num_gpus)) if need]
    return (int(min(fits)) if fits else 1 << 30), resources


def default_workers(num_cpus: float = 1, num_gpus: float = 0) -> int:
    """How many actors of this size the connected cluster holds at once (at least 1)."""
    return max(1, _fits(num_cpus, num_gpus)[0])


class _Worker:
    """An actor applying ``fn(state, item)`` to the items sent to it, where
    ``state = setup(*args)`` is built on its first item (again after a restart).
    The setup arguments come as refs with each item rather than to the
    constructor, so a restart never depends on constructor arguments."""

    _UNSET = object()

    def __init__(self, fn, setup):
        self._fn, self._setup, self._state = fn, setup, self._UNSET

    def call(self, setup_refs, item):
        if self._state is self._UNSET:
            import ray
            self._state = self._setup(*ray.get(setup_refs)) if self._setup is not None else None
        return self._fn(self._state, item)


def map_ordered(fn, items, *, workers: int, setup=None, setup_args=(), num_cpus: float = 1,
                num_gpus: float = 0, max_restarts: int = 3, in_flight: int | None = None):
    """Yield ``fn(state, item)`` for each of ``items``, in the order of ``items``,
    computed on ``workers`` Ray actors (Ray must be connected, see :func:`connect`).

    Each actor builds its ``state = setup(*setup_args)`` once, on its first item
    (None without ``setup``); ``setup_args`` go to the object store once, for all actors. ``items`` is
    consumed lazily: at most ``in_flight`` (default ``2 * workers``) items are
    submitted and not yet yielded, so a stream larger than memory flows through.
    The workers must fit in the cluster at once (checked, rather than waiting
    for resources that never come). An actor whose process dies (killed, out of memory, node lost) is restarted
    (``setup`` again) and its unfinished items rerun, up to ``max_restarts``
    times; every item is yielded exactly once. An exception raised by ``fn``
    is an answer, not a fault: it is raised here, not retried.

    ``fn`` and ``setup`` must be importable or picklable functions; for a
    parameter sweep, ``setup`` can load the shared data once per actor and
    ``items`` be the grid points.
    """
    ray = require_ray()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    fits, have = _fits(num_cpus, num_gpus)
    if workers > fits:  # actors that do not fit would wait forever, and their items with them
        raise ValueError(f"the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs: "
                         f"{fits} worker(s) of {num_cpus:g} CPU(s) and {num_gpus:g} GPU(s) fit, "
                         f"{workers} asked for")
    in_flight = in_flight or 2 * workers
    actor_class = ray.remote(_Worker).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                              max_restarts=max_restarts, max_task_retries=max_restarts)
    shared = [ray.put(a) for a in setup_args]  # once for all actors, held here until the end
    actors = [actor_class.remote(fn, setup) for _ in range(workers)]
    outstanding = [0] * workers
    pending = collections.deque()  # (actor index, ObjectRef), in item order
    try:
        for item in items:
            if len(pending) >= in_flight:
                yield _collect(ray, pending, outstanding)
            a = min(range(workers), key=outstanding.__getitem__)
            pending.append((a, actors[a].call.remote(shared, item)))
            outstanding[a] += 1
        while pending:
            yield _collect(ray, pending, outstanding)
    finally:
        for actor in actors:
            ray.kill(actor)


def _collect(ray, pending, outstanding):
    a, ref = pending.popleft()
    outstanding[a] -= 1
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # fn raised: raise its exception as is
        if isinstance(e.cause, Exception):
            raise e.cause from None
        raise
    except ray.exceptions.RayError as e:  # restarts used up, node lost, ...
        raise RuntimeError(f"a Ray worker failed: {e}") from None


def mapper(workers: int, num_cpus: float = 1, num_gpus: float = 0):
    """A ``mapper(fn, items, setup, setup_args)`` for :func:`ttfs_native.calibrate`
    (and ``convert`` with labels): each stage's settings simulated on ``workers``
    actors of the connected Ray (see :func:`connect`), results in order, so the
    calibration chooses exactly what it chooses in one process."""
    def run(fn, items, setup, setup_args):
        return list(map_ordered(fn, items, workers=workers, setup=setup, setup_args=setup_args,
                                num_cpus=num_cpus, num_gpus=num_gpus))
    return run
