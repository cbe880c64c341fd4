"""The data bundled with the package (data/README.md):

* ``digits``: a CNN trained on scikit-learn's 8x8 digits (calibrated and plain
  conversions) with its test and calibration splits (made by
  ``scripts/train_default_model.py``);
* ``mnist``: the MNIST LeNet-5 with average pooling trained by
  ``scripts/train_mnist.py`` (calibrated and plain conversions, made by
  ``scripts/bundle_mnist.py``) and the first 2000 MNIST test images.
"""
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


DATASETS = ("digits", "mnist")
_MODELS = {"digits": "digits_cnn", "mnist": "mnist_lenet5"}


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    return dataset


def bundled_model(plain: bool = False, dataset: str = "digits", coding: str = "ttfs-dyn-thresh") -> Model:
    """A bundled model: calibrated, or with ``plain`` the toolbox's plain conversion;
    ``coding="ttfs-window"``: converted for the windowed coding (scripts/bundle_window.py)."""
    name = _MODELS[_check_dataset(dataset)]
    if coding == "ttfs-window":
        name += "_window"
    elif coding != "ttfs-dyn-thresh":
        raise ValueError(f"coding must be 'ttfs-dyn-thresh' or 'ttfs-window', got {coding!r}")
    with _data_path(f"{name}_plain" if plain else name) as path:
        return load_model(path)


def _bundled_split(name: str) -> tuple:
    with _data_path(name) as path, np.load(path, allow_pickle=False) as data:
        x = data["x"]
        # MNIST is stored as uint8 pixels (a quarter of the size); models see [0, 1]
        x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
        return x, data["y"].astype(np.int64)


def bundled_test_set(dataset: str = "digits") -> tuple:
    """(x float32 in [0, 1], channels-last, y int64): the digits test split (360, 8, 8, 1), or
    the first 2000 MNIST test images (2000, 28, 28, 1)."""
    return _bundled_split(f"{_check_dataset(dataset)}_test.npz")


def bundled_calibration_set() -> tuple:
    """(x, y): the 287 training images held out to normalise and calibrate the CNN."""
    return _bundled_split("digits_calibration.npz")
