"""From a trained ANN to a converted SNN model: normalisation, the search of
the conversion's free parameters (calibration), and the whole pipeline.
Depends on the model, the importers and the simulator."""
from __future__ import annotations

from .calibrate import CalibrationResult, calibrate
from .convert import calibrated_conversion, convert
from .normalise import normalise

__all__ = ["CalibrationResult", "calibrate", "calibrated_conversion", "convert", "normalise"]
