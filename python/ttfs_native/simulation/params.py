"""Simulation parameters (SNN Toolbox config names in brackets), validated once."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model.settings import CODINGS

MAX_STEPS = 1_000_000
# "ttfs-dyn-thresh": SNN Toolbox's coding (docs/SEMANTICS.md), the default;
# "ttfs-window": linear time-to-first-spike in per-layer windows (docs/WINDOW_SEMANTICS.md).


def _finite(name: str, value, positive: bool = True, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


@dataclass(frozen=True)
class SimParams:
    """Everything a backend needs besides the network and the input.

    ``steps = int(duration / dt)`` [simulation.duration, simulation.dt];
    ``tau_refrac`` [cell.tau_refrac] defaults to ``duration``.
    """

    duration: float
    dt: float = 1.0
    v_thresh: float = 1.0
    tau_refrac: float | None = None
    leak: bool = False
    seed: int = 0
    early_stop: bool = False
    coding: str = "ttfs-dyn-thresh"

    def __post_init__(self):
        if self.coding not in CODINGS:
            raise ValueError(f"coding must be one of {list(CODINGS)}, got {self.coding!r}")
        object.__setattr__(self, "duration", _finite("duration", self.duration))
        object.__setattr__(self, "dt", _finite("dt", self.dt))
        object.__setattr__(self, "v_thresh", _finite("v_thresh", self.v_thresh))
        refrac = self.duration if self.tau_refrac is None else \
            _finite("tau_refrac", self.tau_refrac, allow_zero=True)
        object.__setattr__(self, "tau_refrac", refrac)
        if not isinstance(self.leak, (bool, np.bool_)):
            raise ValueError(f"leak must be true or false, got {self.leak!r}")
        if not isinstance(self.early_stop, (bool, np.bool_)):
            raise ValueError(f"early_stop must be true or false, got {self.early_stop!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or not 0 <= int(self.seed) < 2 ** 64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")
        steps = int(self.duration / self.dt)
        if steps < 1:
            raise ValueError(f"duration {self.duration} / dt {self.dt} gives {steps} time steps; need at least 1")
        if steps > MAX_STEPS:
            raise ValueError(f"duration {self.duration} / dt {self.dt} gives {steps} time steps; "
                             f"at most {MAX_STEPS} are supported")

    @property
    def steps(self) -> int:
        return int(self.duration / self.dt)

    # float32 scalars exactly as SEMANTICS.md defines them
    @property
    def dt32(self) -> np.float32:
        return np.float32(self.dt)

    def tau32(self, t: int) -> np.float32:
        return np.float32(t) * np.float32(self.dt)

    @property
    def leak_step32(self) -> np.float32:
        return np.float32(0.1) * np.float32(self.dt)
