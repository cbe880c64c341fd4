"""A trained ANN file to a converted Model (the library side of ``ttfs-native convert``).

    ttfs-native convert net.onnx --calibration x_val.npy --labels y_val.npy --out net_snn/
    ttfs-native convert net.onnx --calibration x_train.npy --out net_snn/          # plain
    ttfs-native convert net.keras --calibration x.npy --percentile 99.99 --softmax-to-relu --out net_snn/

Without labels: the plain, original conversion: import (``from_onnx`` for
``.onnx``, ``from_keras`` for ``.h5`` and ``.keras``), optionally replace a
softmax output by ReLU (the toolbox's ``softmax_to_relu``) and fold average
pooling into the next weighted layer (``--fold-pooling``), normalise on the
calibration data (normalise.py). The model carries no simulation settings.

With labels: import, softmax output replaced by ReLU (a stochastic output
cannot be calibrated), then :func:`calibrate` chooses normalisation,
thresholds and simulation settings for ``max_steps`` steps, keeping part of
the calibration data to choose between its finalists; the model carries the
chosen settings, so ``simulate DIR`` needs no flags.

Calibration data are channels-last (N, height, width, channels), the layout of
the model folder, whatever the framework the model came from.
"""
from __future__ import annotations

import numpy as np

from ..importers import import_model
from ..model import Model, check_input
from ..model.settings import CODINGS
from ..model.transforms import fold_average_pooling, softmax_to_relu
from ..simulation.simulator import check_labels
from .calibrate import DEFAULT_HOLDOUT, CalibrationResult, calibrate
from .normalise import DEFAULT_PERCENTILE, normalise
from .window import DEFAULT_PERCENTILE as WINDOW_PERCENTILE, convert_window


def convert(path, x_calibration, labels=None, percentile: float | None = None, softmax_relu: bool = False,
            fold_pooling: bool = False, batch_size: int = 256, max_steps: int = 64,
            holdout: float = DEFAULT_HOLDOUT, backend: str = "auto", num_threads: int | None = None,
            log=None, progress=None, coding: str = "ttfs-dyn-thresh", mapper=None,
            search: bool = True) -> Model:
    """Import ``path`` and convert it.

    ``coding="ttfs-window"``: the linear coding in per-layer windows
    (docs/WINDOW_SEMANTICS.md): windows sized on ``x_calibration`` at
    ``percentile`` (default 99.99) within ``max_steps``, then (``search``,
    default) every window's range and steps searched by agreement with the
    ANN on ``x_calibration`` (no labels needed; ``log`` gets its progress),
    the softmax output replaced by ReLU, the settings stored in the Model.
    Otherwise (the original coding, ``percentile`` default 99.9):

    Without ``labels``: optionally apply ``softmax_to_relu`` and fold average
    pooling; normalise at ``percentile``; return the Model. With ``labels``
    (one class index per calibration sample): calibrate for ``max_steps``
    steps (``percentile`` and ``fold_pooling`` are then searched; see
    :func:`calibrated_conversion`) and return the calibrated Model, which
    carries its simulation settings (``Simulator.for_model``).
    """
    if coding == "ttfs-window":
        if labels is not None:
            raise ValueError("labels calibrate the ttfs-dyn-thresh coding; ttfs-window needs none")
        model = softmax_to_relu(path if isinstance(path, Model) else import_model(path))
        check_calibration_layout(model, x_calibration)
        return convert_window(model, x_calibration, max_steps=max_steps, batch_size=batch_size,
                              percentile=WINDOW_PERCENTILE if percentile is None else percentile,
                              search=search, log=log)
    if coding != "ttfs-dyn-thresh":
        raise ValueError(f"coding must be one of {list(CODINGS)}, got {coding!r}")
    if percentile is None:
        percentile = DEFAULT_PERCENTILE
    if labels is not None:
        return calibrated_conversion(path, x_calibration, labels, max_steps=max_steps, holdout=holdout,
                                     backend=backend, num_threads=num_threads, log=log, progress=progress,
                                     mapper=mapper).model
    model = import_model(path)
    if softmax_relu:
        model = softmax_to_relu(model)
    if fold_pooling:
        model = fold_average_pooling(model)
    check_calibration_layout(model, x_calibration)
    return normalise(model, x_calibration, percentile=percentile, batch_size=batch_size)


def calibrated_conversion(path_or_model, x_calibration, labels, max_steps: int = 64,
                          holdout: float = DEFAULT_HOLDOUT, backend: str = "auto", num_threads: int | None = None,
                          log=None, progress=None, **search) -> CalibrationResult:
    """Import (or take) an ANN, check the calibration data, and :func:`calibrate` it.

    Every input is checked before any simulation: the calibration set's
    shape and values, the labels' length, dtype and range, and that the
    ANN's output is positive on some calibration sample (else no output
    neuron can fire). ``search``: further keyword arguments of
    :func:`calibrate` (the grid). Returns the :class:`CalibrationResult`.
    """
    model = path_or_model if isinstance(path_or_model, Model) else import_model(path_or_model)
    model = softmax_to_relu(model)
    x, y = check_calibration(model, x_calibration, labels)
    return calibrate(model, x, y, max_steps=max_steps, holdout=holdout, backend=backend,
                     num_threads=num_threads, log=log, progress=progress, **search)


def check_calibration(model: Model, x_calibration, labels) -> tuple:
    """(x, y) as float32 / int64 arrays, or ValueError naming what is wrong with them."""
    check_calibration_layout(model, x_calibration)
    x = check_input(model, x_calibration, "calibration input", allow_empty=False)
    y = check_labels(labels, x.shape[0], model.num_classes)
    out = model.ann_forward(x, return_all=True)[model.output_layer.name]
    if not np.any(out > 0):
        raise ValueError(f"the ANN's output is never positive on the {len(x)} calibration samples, so no "
                         "output neuron can fire; the SNN cannot classify them")
    return x, y


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
