"""ttfs-native: fast, exact simulation of converted spiking neural networks with
time-to-first-spike coding and a dynamic threshold (SNN Toolbox's INI
``ttfs_dyn_thresh`` semantics), on CPU (C++/OpenMP) and GPU (CUDA).

The package in layers (docs/ARCHITECTURE.md): ``model`` (the converted
network and its folder format) <- ``importers`` <- ``simulation`` <-
``conversion`` <- ``demo``, ``plots`` <- ``cli``.
"""
from __future__ import annotations

from ._version import __version__
from .conversion import calibrate, convert, normalise
from .importers import from_keras, from_onnx, import_model
from .model import Model, ModelError, load_model, save_model
from .simulation import EngineOptions, SimParams, SimulationResult, Simulator


def build_info() -> dict:
    """What this installation was built with and can use."""
    from . import _core
    from .simulation import cuda_status, default_threads

    available, reason = cuda_status()
    options = EngineOptions()  # the defaults in effect (environment variables included)
    return {
        "version": __version__,
        "openmp": bool(_core.openmp_enabled()),
        "cpu_kernels": str(_core.cpu_kernels(getattr(_core.CpuKernels, options.cpu_kernels))),
        "threads": default_threads(),
        "cuda": bool(_core.cuda_compiled),
        "cuda_architectures": [a for a in str(_core.cuda_architectures).split(",") if a],
        "cuda_available": available,
        "cuda_status": reason,
        "engine_options": options.as_dict(),
    }


def __getattr__(name):
    if name == "DeviceArray":  # float32 GPU memory, a DLPack producer (CUDA builds)
        from . import _core
        if not hasattr(_core, "DeviceArray"):
            raise AttributeError("ttfs_native.DeviceArray needs a build with the CUDA backend "
                                 "(this one has none)")
        return _core.DeviceArray
    raise AttributeError(f"module 'ttfs_native' has no attribute {name!r}")


# DeviceArray is left out: it exists only in builds with the CUDA backend, and
# `from ttfs_native import *` must work on every build.
__all__ = ["EngineOptions", "Model", "ModelError", "SimParams", "SimulationResult", "Simulator", "build_info", "calibrate",
           "convert", "from_keras", "from_onnx", "import_model", "load_model", "normalise", "save_model",
           "__version__"]
