"""Importers: trained ANNs from other frameworks into the neutral model format.

Each returns a :class:`ttfs_native.model.Model`; ``model.save(path)`` writes
the model folder. The framework readers (``onnx``, ``h5py``) are imported
only when an importer is called.
"""
from __future__ import annotations

from pathlib import Path

from .keras_importer import from_keras
from .onnx_importer import from_onnx

# file extension -> importer
IMPORTERS = {".onnx": from_onnx, ".h5": from_keras, ".keras": from_keras}


def import_model(path):
    """Read an ANN file with the importer its extension names."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMPORTERS:
        raise ValueError(f"cannot tell the format of {path.name!r} from its extension {suffix!r}; "
                         f"supported: {', '.join(sorted(IMPORTERS))}")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return IMPORTERS[suffix](path)


__all__ = ["IMPORTERS", "from_keras", "from_onnx", "import_model"]
