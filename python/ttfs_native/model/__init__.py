"""The converted network: layer types, the in-memory Model and its folder
format, numpy layer operations, graph transforms and operation counts.
Depends on nothing else in the package."""
from __future__ import annotations

from .layers import LayerSpec, ModelError
from .model import INPUT_NAME, Model, check_input, load_model, save_model, weight_shapes

__all__ = ["INPUT_NAME", "LayerSpec", "Model", "ModelError", "check_input", "load_model", "save_model",
           "weight_shapes"]
