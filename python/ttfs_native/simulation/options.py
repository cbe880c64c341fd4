"""How an engine computes: options that never change a result, only the way to it
(except ``cpu_sums="float32"``, which keeps results within SEMANTICS.md's
agreement contract but not bit-identical).

Every option left out (None) takes its default from an environment variable
when that is set, else the built-in default:

==================  ======================  =================================================
option              environment variable    values (built-in default first)
==================  ======================  =================================================
cpu_share           TTFS_CPU_SHARE          ``auto`` (threads share a sample's large layers
                                            when a batch has fewer samples than threads),
                                            ``all`` (every layer; for tests)
cpu_kernels         TTFS_CPU_KERNELS        ``auto`` (AVX-512 where the CPU has it, else
                                            AVX2), ``avx2`` (at most AVX2), ``generic``
                                            (the portable kernels)
cpu_sums            TTFS_CPU_SUMS           ``float64`` (the CPU engine's running sums of
                                            I and M; bit-identical to earlier releases),
                                            ``float32`` (faster; first-spike times agree
                                            with float64 on >= 99.99% in the tests, not
                                            bit-identical)
cuda_schedule       TTFS_CUDA_SCHEDULE      ``step`` (one CUDA graph launch per step),
                                            ``layer`` (one launch per layer running all steps)
cuda_synapses       TTFS_CUDA_SYNAPSES      ``events`` (event-driven synaptic input),
                                            ``gather`` (re-gather the whole fan-in; for comparison)
cuda_window         TTFS_CUDA_WINDOW        None (the whole run, or a quarter of it with
                                            early stop), or 1..1024 steps per window of the
                                            layer-major loop
cuda_profile        TTFS_CUDA_PROFILE       False, True (``0`` / ``1``): the layer-major loop
                                            prints each launch's time to stderr
cuda_memory_limit   (none)                  None (what the GPU has free), or bytes
==================  ======================  =================================================

Bad values raise ValueError naming the option (or the environment variable)
and the values allowed. A network with a residual Add runs the step loop
with event-driven synapses whatever ``cuda_schedule`` and ``cuda_synapses``
ask (only those kernels integrate an Add; the results are the same).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import numpy as np

CHOICES = {
    "cpu_share": ("auto", "all"),
    "cpu_kernels": ("auto", "avx2", "generic"),
    "cpu_sums": ("float64", "float32"),
    "cuda_schedule": ("step", "layer"),
    "cuda_synapses": ("events", "gather"),
}
ENVIRONMENT = {
    "cpu_share": "TTFS_CPU_SHARE",
    "cpu_kernels": "TTFS_CPU_KERNELS",
    "cpu_sums": "TTFS_CPU_SUMS",
    "cuda_schedule": "TTFS_CUDA_SCHEDULE",
    "cuda_synapses": "TTFS_CUDA_SYNAPSES",
    "cuda_window": "TTFS_CUDA_WINDOW",
    "cuda_profile": "TTFS_CUDA_PROFILE",
}
MAX_WINDOW_STEPS = 1024  # csrc/cuda/layer_history.cuh kMaxWindowSteps


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check(name: str, value, source: str):
    """``value`` of option ``name`` checked; ``source`` names it in errors."""
    if name in CHOICES:
        if value not in CHOICES[name]:
            raise ValueError(f"{source} must be one of {list(CHOICES[name])}, got {value!r}")
        return value
    if name == "cuda_window":
        if value is None:
            return None
        if not _is_int(value) or not 1 <= value <= MAX_WINDOW_STEPS:
            raise ValueError(f"{source} must be None or a number of steps from 1 to {MAX_WINDOW_STEPS}, "
                             f"got {value!r}")
        return int(value)
    if name == "cuda_profile":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{source} must be True or False, got {value!r}")
        return bool(value)
    if name == "cuda_memory_limit":
        if value is None:
            return None
        if not _is_int(value) or value < 1:
            raise ValueError(f"{source} must be a positive number of bytes or None, got {value!r}")
        return int(value)
    raise AssertionError(name)


def _from_environment(name: str):
    """The default of option ``name`` from its environment variable (None: not set)."""
    variable = ENVIRONMENT.get(name)
    text = os.environ.get(variable, "").strip() if variable else ""
    if not text:
        return None
    source = f"environment variable {variable} (the default of {name})"
    if name == "cuda_window":
        if not text.isdigit():
            raise ValueError(f"{source} must be a number of steps from 1 to {MAX_WINDOW_STEPS}, got {text!r}")
        return _check(name, int(text), source)
    if name == "cuda_profile":
        if text not in ("0", "1"):
            raise ValueError(f"{source} must be 0 or 1, got {text!r}")
        return text == "1"
    return _check(name, text, source)


_BUILT_IN = {"cpu_share": "auto", "cpu_kernels": "auto", "cpu_sums": "float64", "cuda_schedule": "step",
             "cuda_synapses": "events",
             "cuda_window": None, "cuda_profile": False, "cuda_memory_limit": None}


@dataclass(frozen=True)
class EngineOptions:
    """How the native engines compute (see the module's table). None: the
    environment variable's value if set, else the built-in default. Options
    of the other backend are ignored by each (the CPU engine reads cpu_*,
    the CUDA engine cuda_*)."""

    cpu_share: str | None = None
    cpu_kernels: str | None = None
    cpu_sums: str | None = None
    cuda_schedule: str | None = None
    cuda_synapses: str | None = None
    cuda_window: int | None = None
    cuda_profile: bool | None = None
    cuda_memory_limit: int | None = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                value = _from_environment(f.name)
                if value is None:
                    value = _BUILT_IN[f.name]
            else:
                value = _check(f.name, value, f.name)
            object.__setattr__(self, f.name, value)

    def as_dict(self) -> dict:
        return asdict(self)

    def to_core(self, core, threads: int = 0):
        """The compiled core's EngineOptions (csrc/core/engine.h), with ``threads`` CPU threads."""
        o = core.EngineOptions()
        o.cpu_share = getattr(core.CpuShare, self.cpu_share)
        o.cpu_kernels = getattr(core.CpuKernels, self.cpu_kernels)
        o.cpu_sums = getattr(core.CpuSums, self.cpu_sums)
        o.cpu_threads = int(threads)
        o.cuda_schedule = getattr(core.CudaSchedule, self.cuda_schedule)
        o.cuda_synapses = getattr(core.CudaSynapses, self.cuda_synapses)
        o.cuda_window = self.cuda_window or 0
        o.cuda_profile = self.cuda_profile
        o.cuda_memory_limit = self.cuda_memory_limit or 0
        return o
