"""Train the MNIST networks of the accuracy work (issue 14) and export them to ONNX.

    pip install torch==2.13.0 onnx                  # CPU wheel; not needed at install time
    python scripts/train_mnist.py                   # from the repository root; ~3-6 min per net on 2 cores
    python scripts/train_mnist.py --nets lenet5_avg lenet5_bn_max --out /tmp/nets

Data: ``../shared/datasets/mnist.npz`` (``--data``), pixels scaled from
uint8 0-255 to float32 [0, 1]. Split, fixed:

* fit: the first 55000 training images, the only ones trained on;
* validation / calibration: the last 5000 training images, never trained
  on; conversion settings are to be chosen here;
* test: the 10000 MNIST test images, only reported, never used to choose.

Networks (PyTorch, NCHW; cross-entropy on the logits; Adam, batch 128,
cosine learning-rate schedule, fixed seeds, CPU, 2 threads; dropout 0.1
before the hidden dense layers, none in the exported graph):

* ``lenet5_avg``: Conv 6@5x5 same - ReLU - AvgPool 2 - Conv 16@5x5 valid -
  ReLU - AvgPool 2 - Flatten - Dense 120 ReLU - Dense 84 ReLU - Dense 10 linear;
* ``lenet5_bn_max``: the same with BatchNorm after each conv (before the
  ReLU) and MaxPool 2 instead of AvgPool 2;
* ``lenet_wide``: Conv 32@5x5 valid - ReLU - AvgPool 2 - Conv 64@5x5 valid -
  ReLU - AvgPool 2 - Flatten - Dense 128 ReLU - Dense 10 linear;

Writes, under ``--out`` (default ``/work/proto/mnist_nets``): ``NAME.onnx``
for each net (opset 13, eval mode, dynamic batch axis, input ``x``
(N, 1, 28, 28), output ``logits`` (N, 10), no softmax) and
``accuracies.json`` (ANN accuracy on the full test set and on the
validation split, epochs, training time; merged with an existing file).
With ttfs_native and onnx installed it checks that ``tn.from_onnx`` imports
each net and that the imported model's
``ann_forward`` (channels-last input) predicts as PyTorch does on 1000 test
images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "mnist.npz"
DEFAULT_OUT = Path("/work/proto/mnist_nets")
SEED = 0
VALIDATION_SIZE = 5000
BATCH = 128
LR = 2e-3
DROPOUT = 0.1
OPSET = 13
NETS = ("lenet5_avg", "lenet5_bn_max", "lenet_wide")
EPOCHS = {"lenet5_avg": 8, "lenet5_bn_max": 8, "lenet_wide": 6}


def load_mnist(path: Path):
    """(x_fit, y_fit), (x_val, y_val), (x_test, y_test); x float32 (N, 1, 28, 28) in [0, 1]."""
    d = np.load(path)

    def prep(x):
        return (x.astype(np.float32) / 255.0)[:, None]

    x_train, y_train = prep(d["x_train"]), d["y_train"].astype(np.int64)
    x_test, y_test = prep(d["x_test"]), d["y_test"].astype(np.int64)
    n_fit = len(x_train) - VALIDATION_SIZE
    return ((x_train[:n_fit], y_train[:n_fit]), (x_train[n_fit:], y_train[n_fit:]), (x_test, y_test))


def build_net(name: str):
    import torch.nn as nn

    def lenet5(bn: bool, pool):
        def conv_block(cin, cout, padding):
            layers = [nn.Conv2d(cin, cout, 5, padding=padding)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.ReLU(), pool(2)]

        return nn.Sequential(
            *conv_block(1, 6, 2), *conv_block(6, 16, 0), nn.Flatten(),
            nn.Dropout(DROPOUT), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Dropout(DROPOUT), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10))

    if name == "lenet5_avg":
        return lenet5(False, nn.AvgPool2d)
    if name == "lenet5_bn_max":
        return lenet5(True, nn.MaxPool2d)
    if name == "lenet_wide":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Dropout(DROPOUT), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
            nn.Dropout(DROPOUT), nn.Linear(128, 10))
    raise ValueError(f"unknown net {name!r}")


def predict(net, x, batch: int = 1000):
    import torch

    net.eval()
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def train(name: str, fit, epochs: int, seed: int = SEED, log=print, build=None, lr: float = LR):
    """Train ``build_net(name)`` (or ``build()``) on ``fit``; the same recipe for every net."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    net = build_net(name) if build is None else build()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(fit[0]) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(fit[0]), torch.from_numpy(fit[1])
    for epoch in range(epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.from_numpy(rng.permutation(len(xs)))
        total = 0.0
        for lo in range(0, len(order), BATCH):
            idx = order[lo:lo + BATCH]
            opt.zero_grad()
            loss = loss_fn(net(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"  {name} epoch {epoch + 1}/{epochs}: loss {total / len(xs):.4f} ({time.perf_counter() - t0:.1f} s)", flush=True)
    net.eval()
    return net


def export(net, path: Path):
    import torch

    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})


def check_import(path: Path, logits: np.ndarray, x: np.ndarray, channels_first: bool = True,
                 framework: str = "PyTorch") -> str:
    """Import with ttfs_native (by the file's suffix: .onnx, .h5, .keras) and compare
    its ANN's predictions with the framework's ``logits`` on ``x`` (NCHW if
    ``channels_first``, else channels-last)."""
    try:
        import ttfs_native as tn
        model = tn.import_model(path)
    except ImportError as e:
        return f"not checked ({e})"
    out = model.ann_forward(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if channels_first else x)
    agree = float(np.mean(out.argmax(1) == logits.argmax(1)))
    diff = float(np.max(np.abs(out - logits)))
    if agree < 1.0:
        raise SystemExit(f"error: {path.name}: ttfs_native's ANN agrees with {framework} on {agree:.4f} only")
    return f"ttfs_native import agrees on {len(x)} test images (max |logit diff| {diff:.2e})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    parser.add_argument("--epochs", type=int, default=None, help="override every net's epoch count")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    fit, val, test = load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "accuracies.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for name in args.nets:
        epochs = args.epochs or EPOCHS[name]
        t0 = time.perf_counter()
        net = train(name, fit, epochs)
        train_s = time.perf_counter() - t0
        test_logits, val_logits = predict(net, test[0]), predict(net, val[0])
        acc_test = float(np.mean(test_logits.argmax(1) == test[1]))
        acc_val = float(np.mean(val_logits.argmax(1) == val[1]))
        path = args.out / f"{name}.onnx"
        export(net, path)
        check = check_import(path, test_logits[:1000], test[0][:1000])
        print(f"{name}: test {acc_test:.4f}, validation {acc_val:.4f}, {epochs} epochs, {train_s:.0f} s; "
              f"{path} ({path.stat().st_size} bytes); {check}", flush=True)
        summary[name] = {"onnx": path.name, "ann_accuracy_test": acc_test, "ann_accuracy_validation": acc_val,
                         "test_images": int(len(test[1])), "validation_images": int(len(val[1])),
                         "validation_split": "last 5000 MNIST training images (never trained on)",
                         "epochs": epochs, "train_seconds": round(train_s, 1), "seed": SEED,
                         "torch": torch.__version__, "opset": OPSET, "import_check": check}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
