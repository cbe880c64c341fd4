"""``python -m bench.accuracy``: ANN versus plain and calibrated SNN accuracy (bench/ACCURACY.md).

    python scripts/train_mnist.py --nets lenet5_avg lenet5_bn_max lenet_wide   # the MNIST nets (once)
    python -m bench.accuracy                        # every net, full MNIST test set (~15 min on 2 cores)
    python -m bench.accuracy --nets digits lenet5_avg --test 2000 --json out.json

For every network: the ANN's accuracy on the test images; the *plain*
conversion (the toolbox's: normalised at the 99.9th percentile, ``v_thresh``
1, ``dt`` 1, 64 steps); and for every coding, the *calibrated* conversion
(``ttfs_native.calibrated_conversion`` on labelled images from the training
data only: the digits' calibration split, or 1000 images of the MNIST
validation split, the last 5000 training images, which the nets were not
trained on) simulated with the settings its folder carries. The digits nets
(the bundled average-pooling CNN, and the batch-norm + max-pooling one of
tests/data/digits_bn_max.onnx) use the bundled calibration (287) and test
(360) splits. Columns: test
accuracy, loss against the ANN, steps, mean latency, spikes per neuron,
synaptic operations / ANN operations, calibration time.

Codings are a dimension of the table: ``CODINGS`` maps a coding name to the
function that converts an ANN for it; a new coding adds an entry and gets its
own columns.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

NETS_DIR = Path("/work/proto/mnist_nets")
MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"
VALIDATION_SIZE = 5000      # the last 5000 MNIST training images: never trained on (scripts/train_mnist.py)
CALIBRATION = 1000
MAX_STEPS = 64
DIGITS_BN_MAX = Path(__file__).resolve().parents[1] / "tests" / "data" / "digits_bn_max.onnx"
# name: (description, ONNX file (under --nets-dir when relative) or None for the bundled digits CNN's plain
# conversion, data set: "digits" (the bundled split of scripts/train_default_model.py) or "mnist")
NETS = {
    "digits": ("8x8-digits CNN (bundled; conv-pool-conv-pool-dense)", None, "digits"),
    "digits_bn_max": ("8x8-digits CNN, batch norm + max pooling (scripts/train_digits_bn_max.py)", DIGITS_BN_MAX,
                      "digits"),
    "lenet5_avg": ("MNIST LeNet-5, average pooling", "lenet5_avg.onnx", "mnist"),
    "lenet5_bn_max": ("MNIST LeNet-5, batch norm + max pooling", "lenet5_bn_max.onnx", "mnist"),
    "lenet_wide": ("MNIST wide LeNet (32@5x5, 64@5x5, 128)", "lenet_wide.onnx", "mnist"),
}
# Published figures on comparable nets (original ttfs_dyn_thresh coding), for the table.
PUBLISHED = {
    "lenet5_avg": "-4.7 (toolbox author, snn_toolbox #60); < 1 (Rueckauer & Liu 2018)",
    "lenet5_bn_max": "-10 (MNIST, user report, snn_toolbox #143)",
}


def _calibrated_dyn_thresh(ann, x, y, log):
    from ttfs_native.conversion import calibrated_conversion
    return calibrated_conversion(ann, x, y, max_steps=MAX_STEPS, log=log).model


def _window(ann, x, y, log):
    import ttfs_native as tn
    return tn.convert(ann, x, coding="ttfs-window", max_steps=MAX_STEPS)   # no labels needed


# coding -> (ANN Model, x_cal, y_cal, log) -> converted Model carrying its settings
CODINGS = {"ttfs-dyn-thresh": _calibrated_dyn_thresh, "ttfs-window": _window}


def load_net(name: str, nets_dir: Path, mnist: Path, test: int):
    """(ANN Model, (x_cal, y_cal), (x_test, y_test)), channels-last float32 in [0, 1]."""
    import ttfs_native as tn
    from ttfs_native.datasets import bundled_model, bundled_test_set
    _, onnx, dataset = NETS[name]
    if dataset == "digits":
        from ttfs_native.datasets import bundled_calibration_set
        xt, yt = bundled_test_set()
        ann = bundled_model(plain=True) if onnx is None else tn.from_onnx(nets_dir / onnx)
        return ann, bundled_calibration_set(), (xt[:test], yt[:test])
    d = np.load(mnist)
    x_val = d["x_train"][-VALIDATION_SIZE:][:CALIBRATION, :, :, None].astype(np.float32) / 255
    y_val = d["y_train"][-VALIDATION_SIZE:][:CALIBRATION].astype(np.int64)
    x_test = d["x_test"][:test, :, :, None].astype(np.float32) / 255
    return tn.from_onnx(nets_dir / onnx), (x_val, y_val), (x_test, d["y_test"][:test].astype(np.int64))


def snn_row(model, x, y, **settings) -> dict:
    from ttfs_native import Simulator
    sim = Simulator.for_model(model, backend="cpu", **settings)
    r = sim.run(x, y)
    ann_ops = r.ann_ops   # the ANN as trained (before pooling was folded)
    return {"accuracy": float(r.accuracy), "steps": sim.steps, "latency": float(r.mean_latency_steps),
            "spikes_per_neuron": float(r.spikes_per_neuron), "synops_ratio": float(r.synops_per_sample / ann_ops),
            "undecided": int(np.sum(r.predictions < 0))}


def measure(name: str, nets_dir: Path, mnist: Path, test: int, codings) -> dict:
    import ttfs_native as tn
    from ttfs_native.model.ann import ann_predictions
    from ttfs_native.model.transforms import softmax_to_relu
    ann, (xc, yc), (xt, yt) = load_net(name, nets_dir, mnist, test)
    row = {"net": name, "description": NETS[name][0], "test_images": len(yt), "calibration_images": len(yc),
           "ann_accuracy": float(np.mean(ann_predictions(ann, xt) == yt))}
    plain = tn.normalise(softmax_to_relu(ann), xc, 99.9)
    row["plain"] = snn_row(plain, xt, yt, duration=MAX_STEPS, dt=1.0, v_thresh=1.0, leak=False)
    for coding in codings:
        t0 = time.perf_counter()
        model = CODINGS[coding](ann, xc, yc, lambda line: print(f"  {name} {coding}: {line}", file=sys.stderr))
        seconds = time.perf_counter() - t0
        row[coding] = {**snn_row(model, xt, yt), "calibration_seconds": round(seconds, 1),
                       "settings": model.simulation}
    return row


def table(rows: list, codings) -> str:
    head = ["net", "test images", "ANN", "plain SNN (64 steps)"] + \
        [f"calibrated {c}" for c in codings] + ["published (loss, points)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def cell(r: dict, ann: float) -> str:
        return (f"{r['accuracy']:.2%} ({100 * (r['accuracy'] - ann):+.2f}); {r['steps']} steps, latency "
                f"{r['latency']:.1f}, {r['spikes_per_neuron']:.2f} spikes/neuron, {r['synops_ratio']:.2f}x ANN ops"
                + (f", calibrated in {r['calibration_seconds']:.0f} s" if "calibration_seconds" in r else ""))
    for row in rows:
        a = row["ann_accuracy"]
        cells = [row["description"], str(row["test_images"]), f"{a:.2%}", cell(row["plain"], a)]
        cells += [cell(row[c], a) if c in row else "-" for c in codings]
        cells.append(PUBLISHED.get(row["net"], "-"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--codings", nargs="+", choices=list(CODINGS), default=list(CODINGS))
    p.add_argument("--nets-dir", type=Path, default=NETS_DIR, help="where scripts/train_mnist.py wrote the ONNX files")
    p.add_argument("--mnist", type=Path, default=MNIST)
    p.add_argument("--test", type=int, default=10000, help="test images per net (default: all)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    for name in args.nets:
        _, onnx, dataset = NETS[name]
        if onnx is not None and not ((args.nets_dir / onnx).is_file() and (dataset != "mnist" or args.mnist.is_file())):
            print(f"skipping {name}: {args.nets_dir / onnx} or {args.mnist} missing", file=sys.stderr)
            continue
        rows.append(measure(name, args.nets_dir, args.mnist, args.test, args.codings))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(table(rows, args.codings))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
