"""Train the bundled demo network and write it into the package.

    pip install torch==2.13.0 scikit-learn      # CPU wheel; not needed at install time
    python scripts/train_default_model.py       # from the repository root; ~70 s on 2 cores

Trains Conv2D(16,3,same) - AvgPool(2) - Conv2D(32,3,same) - AvgPool(2) -
Flatten - Dense(10) on scikit-learn's 8x8 digits (pixels scaled to [0, 1],
channels-last) with PyTorch (Adam, cross-entropy, 120 epochs, dropout 0.2
after each pooling layer), fixed seeds and a fixed split:

* test: 360 images (stratified, ``random_state=0``), bundled for the demo;
* train: the other 1437, of which 287 (stratified, ``random_state=1``) are
  held out as the *calibration* set: they normalise the converted network
  and are where ``ttfs-native calibrate`` searches the conversion's free
  parameters; the ANN is fitted on the remaining 1150.

Dropout makes the ANN robust to perturbed hidden activations, which is what
the TTFS code does to them. Measured on the calibration split while choosing
this recipe (same architecture, calibrated SNN): without dropout the SNN lost
4-5 points to the ANN (0.913 vs 0.958), with dropout 0.1-0.3 between 0.4 and
2 points (here 0.979 vs 0.983).

The network is converted to the model-folder layouts (MODEL_FORMAT.md), its
softmax output is replaced by ReLU (the toolbox's ``softmax_to_relu``: a
deterministic output that fires once), and it is normalised on the
calibration set at the 99.9th percentile: that is ``digits_cnn_plain``, the
toolbox's plain conversion. ``calibrate`` then searches the conversion's
free parameters on the calibration set (calibrate.py) and its best model is
``digits_cnn``, the demo's default. Writes, under ``python/ttfs_native/data/``:
``digits_cnn/`` and ``digits_cnn_plain/`` (``model.json``, ``weights.npz``),
``digits_test.npz`` and ``digits_calibration.npz`` (``x`` (N, 8, 8, 1)
float32, ``y`` (N,) int64). Reinstall the package afterwards
(``pip install --no-build-isolation .``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "python" / "ttfs_native" / "data"
SEED = 0
TEST_SIZE = 360
CALIBRATION_SIZE = 287
EPOCHS = 120
DROPOUT = 0.2
PLAIN_PERCENTILE = 99.9


def load_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]   # (1797, 8, 8, 1) in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_SIZE, stratify=y, random_state=0)
    x_fit, x_cal, y_fit, y_cal = train_test_split(x_train, y_train, test_size=CALIBRATION_SIZE,
                                                  stratify=y_train, random_state=1)
    return (x_fit, y_fit), (x_cal, y_cal), (x_test, y_test)


def build_torch_net():
    import torch.nn as nn

    class ChannelsLastFlatten(nn.Module):
        """Flatten in (height, width, channels) order, as Keras and the model folder do."""

        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1)

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(DROPOUT),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(DROPOUT),
        ChannelsLastFlatten(), nn.Linear(2 * 2 * 32, 10))


def train(x_fit, y_fit, epochs=EPOCHS, seed=SEED, build=build_torch_net):
    """Fit ``build()`` on the fit split (the recipe of every digits net: scripts/train_digits_bn_max.py too)."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)   # deterministic and fast enough for 6k parameters
    rng = np.random.default_rng(seed)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    yt = torch.from_numpy(y_fit)
    xs = torch.from_numpy(x_fit).permute(0, 3, 1, 2)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x_fit)))
        net.train()
        for lo in range(0, len(order), 32):
            idx = order[lo:lo + 32]
            opt.zero_grad()
            loss = loss_fn(net(xs[idx]), yt[idx])
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    return net


def to_model(net):
    """The trained network as a ttfs_native Model (Keras layouts, ReLU output)."""
    import torch.nn as nn

    import ttfs_native as tn

    conv1, conv2 = [m for m in net if isinstance(m, nn.Conv2d)]
    dense = next(m for m in net if isinstance(m, nn.Linear))

    def conv_kernel(m):   # torch (out, in, kh, kw) -> Keras (kh, kw, in, out)
        return m.weight.detach().numpy().transpose(2, 3, 1, 0)

    layers = [
        {"name": "conv1", "type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same"},
        {"name": "pool1", "type": "AveragePooling2D", "pool_size": 2},
        {"name": "conv2", "type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same"},
        {"name": "pool2", "type": "AveragePooling2D", "pool_size": 2},
        {"name": "flatten", "type": "Flatten"},
        # trained with softmax (cross-entropy); ReLU for the SNN (softmax_to_relu)
        {"name": "dense", "type": "Dense", "units": 10, "activation": "relu"},
    ]
    weights = {
        "conv1": {"kernel": conv_kernel(conv1), "bias": conv1.bias.detach().numpy()},
        "conv2": {"kernel": conv_kernel(conv2), "bias": conv2.bias.detach().numpy()},
        "dense": {"kernel": dense.weight.detach().numpy().T, "bias": dense.bias.detach().numpy()},
    }
    return tn.Model((8, 8, 1), layers, weights, metadata={
        "description": "8x8 digits CNN trained by scripts/train_default_model.py (softmax output "
                       "replaced by ReLU for the SNN)"})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help=f"output folder (default {DATA})")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)

    import torch
    from ttfs_native.conversion.calibrate import calibrate
    from ttfs_native.model.ann import ann_predictions
    from ttfs_native.conversion.normalise import normalise

    (x_fit, y_fit), (x_cal, y_cal), (x_test, y_test) = load_split()
    net = train(x_fit, y_fit, epochs=args.epochs)
    with torch.no_grad():
        torch_out = torch.relu(net(torch.from_numpy(x_test).permute(0, 3, 1, 2))).numpy()
    ann = to_model(net)
    if not np.allclose(ann.ann_forward(x_test), torch_out, rtol=1e-4, atol=1e-4):
        print("error: the converted model disagrees with the PyTorch network", file=sys.stderr)
        return 1
    plain = normalise(ann, x_cal, percentile=PLAIN_PERCENTILE)
    print(f"ANN accuracy: calibration {np.mean(ann_predictions(plain, x_cal) == y_cal):.4f}, "
          f"test {np.mean(ann_predictions(plain, x_test) == y_test):.4f}")
    result = calibrate(plain, x_cal, y_cal, backend="cpu")   # cpu: the same numbers on every machine
    print(result.summary())
    args.out.mkdir(parents=True, exist_ok=True)
    plain.save(args.out / "digits_cnn_plain")
    result.model.save(args.out / "digits_cnn")
    np.savez_compressed(args.out / "digits_test.npz", x=x_test, y=y_test)
    np.savez_compressed(args.out / "digits_calibration.npz", x=x_cal, y=y_cal)
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            print(f"wrote {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
