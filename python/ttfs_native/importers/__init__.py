"""Importers: trained ANNs from other frameworks into the neutral model format.

Each returns a :class:`ttfs_native.model.Model`; ``model.save(path)`` writes
the model folder. The framework readers (``onnx``, ``h5py``) are imported
only when an importer is called.
"""
from .keras_importer import from_keras
from .onnx_importer import from_onnx

__all__ = ["from_onnx", "from_keras"]
