"""A trained ANN file to a normalised Model (the library side of ``ttfs-native convert``).

    ttfs-native convert net.onnx --calibration x_train.npy --out net_snn/
    ttfs-native convert net.keras --calibration x.npy --percentile 99.99 --softmax-to-relu --out net_snn/

Steps: import (``from_onnx`` for ``.onnx``, ``from_keras`` for ``.h5`` and
``.keras``), optionally replace a softmax output by ReLU (the toolbox's
``softmax_to_relu``) and fold average pooling into the next weighted layer
(``--fold-pooling``), normalise on the calibration data (normalise.py),
save. ``ttfs-native calibrate`` then finds the simulation settings.
Calibration data are channels-last (N, height, width, channels), the layout of
the model folder, whatever the framework the model came from.
"""
from __future__ import annotations

import numpy as np

from ..importers import import_model
from ..model import Model
from ..model.transforms import fold_average_pooling, softmax_to_relu
from .normalise import DEFAULT_PERCENTILE, normalise


def convert(path, x_calibration, percentile: float = DEFAULT_PERCENTILE, softmax_relu: bool = False,
            fold_pooling: bool = False, batch_size: int = 256) -> Model:
    """Import ``path``; optionally apply ``softmax_to_relu`` and fold average
    pooling; normalise; return the Model."""
    model = import_model(path)
    if softmax_relu:
        model = softmax_to_relu(model)
    if fold_pooling:
        model = fold_average_pooling(model)
    check_calibration_layout(model, x_calibration)
    return normalise(model, x_calibration, percentile=percentile, batch_size=batch_size)


def check_calibration_layout(model: Model, x) -> None:
    """Point out channels-first calibration data, the usual mistake with ONNX/PyTorch models."""
    shape = tuple(np.shape(x))
    want = model.input_shape
    if len(want) in (2, 3) and len(shape) == len(want) + 1 and shape[1:] != want \
            and shape[1:] == (want[-1], *want[:-1]):   # (N, C, H, W) or (N, C, L)
        axes = ", ".join(map(str, (0, *range(2, len(shape)), 1)))
        raise ValueError(f"calibration data have shape {shape}, which looks channels-first; the model "
                         f"expects channels-last (N, {', '.join(map(str, want))}): use "
                         f"x.transpose({axes})")
