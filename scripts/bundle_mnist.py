"""Make the MNIST data bundled with the package (``ttfs-native demo --dataset mnist``).

    python scripts/train_mnist.py --nets lenet5_avg        # writes /work/proto/mnist_nets/lenet5_avg.onnx
    PYTHONPATH=python python scripts/bundle_mnist.py        # from the repository root (~2 min on 2 cores)

Writes into python/ttfs_native/data/:

* ``mnist_lenet5/``: the LeNet-5 (average pooling) converted and calibrated by
  ``ttfs_native.calibrated_conversion`` for 64 steps on the first 1000
  images of the validation split (the last 5000 MNIST training images, never
  trained on; 30 % of them held out by the calibration to choose);
* ``mnist_lenet5_plain/``: its plain conversion (normalised at the 99.9th
  percentile on the same images; carries no simulation settings);
* ``mnist_test.npz``: the first 2000 MNIST test images, ``x`` (2000, 28, 28, 1)
  uint8 and ``y`` (2000,) uint8 (see data/README.md for the attribution).

Prints the ANN and SNN accuracy on those 2000 test images.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "python" / "ttfs_native" / "data"
VALIDATION_SIZE = 5000     # as scripts/train_mnist.py
CALIBRATION = 1000
TEST = 2000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/mnist.npz"))
    parser.add_argument("--onnx", type=Path, default=Path("/work/proto/mnist_nets/lenet5_avg.onnx"))
    args = parser.parse_args(argv)

    import ttfs_native as tn
    from ttfs_native.conversion import calibrated_conversion
    from ttfs_native.model.ann import ann_predictions
    from ttfs_native.progress import Progress

    d = np.load(args.data)
    x_val = (d["x_train"][-VALIDATION_SIZE:][:CALIBRATION, :, :, None] / np.float32(255)).astype(np.float32)
    y_val = d["y_train"][-VALIDATION_SIZE:][:CALIBRATION].astype(np.int64)
    x_test, y_test = d["x_test"][:TEST, :, :, None], d["y_test"][:TEST]

    result = calibrated_conversion(args.onnx, x_val, y_val, max_steps=64, log=print,
                                   progress=lambda stage: Progress(desc=stage))
    result.model.metadata["description"] = (
        "MNIST LeNet-5 (average pooling) trained by scripts/train_mnist.py, calibrated by "
        "scripts/bundle_mnist.py on 1000 validation images")
    plain = tn.convert(args.onnx, x_val)
    plain.metadata["description"] = "MNIST LeNet-5 (average pooling), plain conversion (percentile 99.9)"
    for name, model in (("mnist_lenet5", result.model), ("mnist_lenet5_plain", plain)):
        shutil.rmtree(DATA / name, ignore_errors=True)
        model.save(DATA / name)
    np.savez_compressed(DATA / "mnist_test.npz", x=x_test.astype(np.uint8), y=y_test.astype(np.uint8))

    x = x_test.astype(np.float32) / 255
    ann = float(np.mean(ann_predictions(result.model, x) == y_test))
    snn = tn.Simulator.for_model(result.model).run(x, y_test).accuracy
    size = sum(f.stat().st_size for n in ("mnist_lenet5", "mnist_lenet5_plain") for f in (DATA / n).iterdir())
    size += (DATA / "mnist_test.npz").stat().st_size
    print(f"calibrated in {result.wall_time:.0f} s; on the {TEST} bundled test images: ANN {ann:.4f}, "
          f"SNN {snn:.4f}; bundled MNIST files: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
