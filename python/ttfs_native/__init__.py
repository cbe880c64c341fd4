"""ttfs-native: fast, exact simulation of converted spiking neural networks with
time-to-first-spike coding and a dynamic threshold (SNN Toolbox's INI
``ttfs_dyn_thresh`` semantics), on CPU (C++/OpenMP) and GPU (CUDA)."""
from __future__ import annotations

from .layers import ModelError
from .model import Model, load_model, save_model
from .params import SimParams
from .result import SimulationResult
from .simulator import Simulator

__version__ = "0.1.0"


def build_info() -> dict:
    """What this installation was built with and can use."""
    from . import _core
    from .simulator import cuda_status, default_threads

    available, reason = cuda_status()
    return {
        "version": __version__,
        "openmp": bool(_core.openmp_enabled()),
        "cpu_kernels": str(_core.cpu_kernels()),
        "threads": default_threads(),
        "cuda": bool(_core.cuda_compiled),
        "cuda_architectures": [a for a in str(_core.cuda_architectures).split(",") if a],
        "cuda_available": available,
        "cuda_status": reason,
    }


def __getattr__(name):
    # Importers need optional packages (onnx, h5py); load them on first use.
    if name in ("from_onnx", "from_keras"):
        from . import importers
        return getattr(importers, name)
    if name == "DeviceArray":  # float32 GPU memory, a DLPack producer (CUDA builds)
        from . import _core
        if not hasattr(_core, "DeviceArray"):
            raise AttributeError("ttfs_native.DeviceArray needs a build with the CUDA backend "
                                 "(this one has none)")
        return _core.DeviceArray
    raise AttributeError(f"module 'ttfs_native' has no attribute {name!r}")


__all__ = ["DeviceArray", "Model", "ModelError", "SimParams", "SimulationResult", "Simulator", "build_info",
           "from_keras", "from_onnx", "load_model", "save_model", "__version__"]
