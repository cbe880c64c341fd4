"""Make the ttfs-window model folders bundled with the package (``ttfs-native demo --coding ttfs-window``).

    PYTHONPATH=python python scripts/bundle_window.py        # from the repository root

Writes into python/ttfs_native/data/:

* ``digits_cnn_window/``: the bundled digits CNN (its ANN as trained) converted
  by ``ttfs_native.convert(..., coding="ttfs-window", max_steps=64)`` on its
  bundled calibration split;
* ``mnist_lenet5_window/`` (when the MNIST ONNX and data are there): the MNIST
  LeNet-5 of ``scripts/train_mnist.py`` converted the same way on the first
  1000 images of the validation split (the last 5000 training images, never
  trained on), as ``scripts/bundle_mnist.py`` uses.

Prints the ANN and SNN (numpy reference) accuracy on the bundled test images.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "python" / "ttfs_native" / "data"


def _write(model, name: str, dataset: str):
    import ttfs_native as tn
    from ttfs_native.datasets import bundled_test_set
    from ttfs_native.model.ann import ann_predictions
    out = DATA / name
    shutil.rmtree(out, ignore_errors=True)
    model.save(out)
    x, y = bundled_test_set(dataset)
    x, y = x[:500], y[:500]
    r = tn.Simulator.for_model(tn.load_model(out), backend="reference").run(x, y)
    print(f"{name}: ANN {np.mean(ann_predictions(model, x) == y):.4f}, SNN {r.accuracy:.4f} on {len(y)} test images, "
          f"{r.steps} steps")


def main(argv=None) -> int:
    import ttfs_native as tn
    from ttfs_native.datasets import bundled_calibration_set, bundled_model
    from ttfs_native.model.transforms import ann_view
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/mnist.npz"))
    parser.add_argument("--onnx", type=Path, default=Path("/work/proto/mnist_nets/lenet5_avg.onnx"))
    args = parser.parse_args(argv)
    x_cal, _ = bundled_calibration_set()
    _write(tn.convert(ann_view(bundled_model(plain=True)), x_cal, coding="ttfs-window", max_steps=64),
           "digits_cnn_window", "digits")
    if args.onnx.is_file() and args.data.is_file():
        d = np.load(args.data)
        x_val = d["x_train"][-5000:][:1000, :, :, None].astype(np.float32) / 255
        _write(tn.convert(args.onnx, x_val, coding="ttfs-window", max_steps=64), "mnist_lenet5_window", "mnist")
    else:
        print(f"skipped MNIST: {args.onnx} or {args.data} missing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
