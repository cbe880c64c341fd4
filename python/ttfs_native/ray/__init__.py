"""Scaling out on Ray (``pip install "ttfs-native[ray]"``).

- :class:`SNNPredictor`: a callable class for Ray Data's ``map_batches``
  (offline batch inference over a Dataset).
- :func:`simulate`, :func:`simulate_chunks`: one simulation spread over Ray
  workers, every result array identical to the in-process run's.
- :func:`simulate_shards`: inputs larger than memory (.npy shards, Parquet),
  read by Ray Data, results written as shards.
- :func:`map_ordered`, :func:`connect`: the ordered, fault-tolerant actor map
  they run on, for other jobs; :func:`mapper` runs the calibration's
  parameter sweeps on it (``calibrate(..., mapper=mapper(workers=4))``).

``import ttfs_native`` does not import this subpackage, and this subpackage
imports Ray only when a function needs it (Ray's own module is imported
absolutely, ``import ray``; this package never shadows it).
"""
from __future__ import annotations

from .cluster import INSTALL_HINT, connect, default_workers, map_ordered, mapper, require_ray
from .predictor import SNNPredictor
from .shards import shard_kind, simulate_shards
from .simulate import simulate, simulate_chunks

__all__ = ["INSTALL_HINT", "SNNPredictor", "connect", "default_workers", "map_ordered", "mapper", "require_ray",
           "shard_kind", "simulate", "simulate_chunks", "simulate_shards"]
