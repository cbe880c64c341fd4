"""The data bundled with the package: the digits CNN (calibrated and plain
conversions) and its test and calibration splits (made by
``scripts/train_default_model.py``)."""
from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np

from .model import Model, load_model


@contextmanager
def _data_path(*parts):
    with resources.as_file(resources.files("ttfs_native").joinpath("data", *parts)) as path:
        if not Path(path).exists():
            raise FileNotFoundError(f"bundled file ttfs_native/data/{'/'.join(parts)} is missing from this "
                                    "installation; rerun scripts/train_default_model.py and reinstall")
        yield Path(path)


def bundled_model(plain: bool = False) -> Model:
    """The bundled digits CNN: calibrated, or with ``plain`` the toolbox's plain conversion."""
    with _data_path("digits_cnn_plain" if plain else "digits_cnn") as path:
        return load_model(path)


def _bundled_split(name: str) -> tuple:
    with _data_path(name) as path, np.load(path, allow_pickle=False) as data:
        return data["x"].astype(np.float32), data["y"].astype(np.int64)


def bundled_test_set() -> tuple:
    """(x (360, 8, 8, 1) float32 in [0, 1], y (360,) int64): the digits test split."""
    return _bundled_split("digits_test.npz")


def bundled_calibration_set() -> tuple:
    """(x, y): the 287 training images held out to normalise and calibrate the CNN."""
    return _bundled_split("digits_calibration.npz")
