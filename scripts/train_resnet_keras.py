"""Train the MNIST ResNet of train_resnet_mnist.py in Keras and save it (issue 19).

    pip install keras torch==2.13.0 h5py            # Keras 3 on its PyTorch backend (no TensorFlow here)
    KERAS_BACKEND=torch python scripts/train_resnet_keras.py                 # from the repository root
    KERAS_BACKEND=torch python scripts/train_resnet_keras.py --epochs 1 --out /tmp/nets

The same network and data split as scripts/train_resnet_mnist.py, built with
the Keras functional API (channels-last): stem Conv 16@3x3 same - BatchNorm -
ReLU; an identity block (Conv 16 - BN - ReLU - Conv 16 - BN, Add with the
block's input, ReLU); a strided block (Conv 32 stride 2 - BN - ReLU - Conv
32 - BN, Add with a 1x1 stride-2 Conv 32 - BN projection, ReLU); global
average pooling; Dense 10 (logits). Adam, batch 128, cosine-decayed learning
rate, fixed seed; trained on the first 55000 MNIST training images.

Writes ``resnet_mnist_keras.keras`` and ``resnet_mnist_keras.h5`` under
``--out`` (default ``/work/proto/resnet_keras``) and merges its entry into
``accuracies.json`` there. With ttfs_native importable (``PYTHONPATH=python``)
it checks that ``from_keras`` converts both files and that the converted ANN
predicts exactly what Keras predicts on the first 1000 test images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_mnist import check_import, load_mnist  # noqa: E402  (the same data split and check)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "mnist.npz"
DEFAULT_OUT = Path("/work/proto/resnet_keras")
NAME = "resnet_mnist_keras"
SEED, LR, EPOCHS, BATCH, CHECK_IMAGES = 0, 3e-3, 4, 128, 1000


def build_net():
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, strides=1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    def block(x, filters, strides):
        main = layers.ReLU()(conv_bn(x, filters, 3, strides))
        main = conv_bn(main, filters, 3)
        shortcut = conv_bn(x, filters, 1, strides) if strides != 1 or x.shape[-1] != filters else x
        return layers.ReLU()(layers.Add()([main, shortcut]))

    inp = keras.Input((28, 28, 1))
    x = layers.ReLU()(conv_bn(inp, 16, 3))
    x = block(x, 16, 1)
    x = block(x, 32, 2)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10)(x))


def channels_last(x_nchw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(SEED)
    (x_fit, y_fit), val, test = load_mnist(args.data)
    x_fit, x_val, x_test = channels_last(x_fit), channels_last(val[0]), channels_last(test[0])
    net = build_net()
    steps = args.epochs * ((len(x_fit) + BATCH - 1) // BATCH)
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.perf_counter()
    net.fit(x_fit, y_fit, batch_size=BATCH, epochs=args.epochs, verbose=2)
    train_s = time.perf_counter() - t0
    test_logits = net.predict(x_test, batch_size=1000, verbose=0)
    acc_test = float(np.mean(test_logits.argmax(1) == test[1]))
    acc_val = float(np.mean(net.predict(x_val, batch_size=1000, verbose=0).argmax(1) == val[1]))
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [args.out / f"{NAME}.keras", args.out / f"{NAME}.h5"]
    for path in paths:
        net.save(path)
    checks = {path.suffix: check_import(path, test_logits[:CHECK_IMAGES], x_test[:CHECK_IMAGES],
                                        channels_first=False, framework="Keras") for path in paths}
    print(f"{NAME}: test {acc_test:.4f}, validation {acc_val:.4f}, {args.epochs} epochs, {train_s:.0f} s; {checks}",
          flush=True)
    summary_path = args.out / "accuracies.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary[NAME] = {"files": [p.name for p in paths], "ann_accuracy_test": acc_test,
                     "ann_accuracy_validation": acc_val, "epochs": args.epochs, "train_seconds": round(train_s, 1),
                     "seed": SEED, "keras": keras.__version__, "backend": keras.backend.backend(),
                     "import_check": checks}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
