"""Simulating a converted model: parameters, the plan handed to the native
engines, the engines (numpy reference, CPU, CUDA) and their results.
Depends on the model only."""
from __future__ import annotations

from .options import EngineOptions
from .params import SimParams
from .result import SimulationResult
from .simulator import BACKENDS, Simulator, cuda_status, default_threads

__all__ = ["BACKENDS", "EngineOptions", "SimParams", "SimulationResult", "Simulator", "cuda_status", "default_threads"]
