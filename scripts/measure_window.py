"""Accuracy, spikes and synaptic operations of the ttfs-window coding against the ANN.

    PYTHONPATH=python python3 scripts/measure_window.py                    # digits CNN + MNIST LeNets
    PYTHONPATH=python python3 scripts/measure_window.py --snn-samples 2000 --fine-samples 200

Nets: the bundled digits CNN (its plain conversion's ANN; calibration and
test splits bundled), and the MNIST LeNets of scripts/train_mnist.py in
``--nets-dir`` (skipped when absent). MNIST: calibration = the first 1000 of
the last 5000 training images (never trained on), test = the MNIST test set.

For each net: conversion with ``convert_window`` (defaults: percentile 99.99,
average pooling folded, measured step split, then the search of ranges and
steps; ``--no-search`` skips it) at ``--max-steps`` in all, and at
``--fine`` steps per window (the same ranges). The quantised-ANN estimator
runs on the whole test set; the SNN (``--backend``, default the numpy reference) on the first ``--snn-samples`` (64 steps)
and ``--fine-samples`` (fine) test images, where its predictions are also
compared with the estimator's. Synaptic operations are compared with the
ANN as trained (before average pooling was folded), exact convention.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import ttfs_native as tn
from ttfs_native.conversion.window import convert_window, quantised_forward
from ttfs_native.datasets import bundled_calibration_set, bundled_model, bundled_test_set
from ttfs_native.model import connectivity
from ttfs_native.model.ann import ann_predictions
from ttfs_native.simulation.window_plan import plan_for

ROOT = Path(__file__).resolve().parents[1]


def mnist(path: Path):
    d = np.load(path)
    x_val = (d["x_train"][-5000:].astype(np.float32) / 255)[..., None]
    x_test = (d["x_test"].astype(np.float32) / 255)[..., None]
    return x_val[:1000], x_test, d["y_test"].astype(np.int64)


def estimate(model, x):
    plan = plan_for(model)
    return np.concatenate([quantised_forward(model, x[i:i + 1000], plan).argmax(1)
                           for i in range(0, len(x), 1000)])


def measure(name, ann, x_cal, x_test, y_test, args) -> list:
    before = ann.metadata.get("ann_operations_before_folding", {})   # the ANN as trained
    ann_ops = before.get("exact") or connectivity.ann_operations(ann, "exact")
    ann_pred = ann_predictions(ann, x_test)
    rows = []
    coarse = convert_window(ann, x_cal, max_steps=args.max_steps, search=not args.no_search)
    # the same net with --fine steps in every window
    window = dict(coarse.simulation["window"], input_steps=args.fine,
                  steps={k: args.fine for k in coarse.simulation["window"]["steps"]})
    fine_steps = 1 + args.fine * (len(window["steps"]) + 1)
    fine = tn.Model(coarse.input_shape, [s.to_json() for s in coarse.layers], coarse.weights, coarse.metadata,
                    dict(coarse.simulation, window=window, duration=float(fine_steps)))
    for label, model, n_snn in [(f"<= {args.max_steps} steps", coarse, args.snn_samples),
                                (f"{args.fine} per window ({fine_steps} steps)", fine, args.fine_samples)]:
        start = time.time()
        est = estimate(model, x_test)
        row = {"net": name, "setting": label, "ann_acc": float(np.mean(ann_pred == y_test)),
               "est_acc": float(np.mean(est == y_test)), "est_agree": float(np.mean(est == ann_pred)),
               "steps": int(model.simulation["duration"]), "window": model.simulation["window"]}
        for zero_spikes in (True, False):
            # silent zeros change no prediction (checked here), only spikes and operations
            n_snn = min(n_snn, len(x_test)) if zero_spikes else min(n_snn, len(x_test), 1000)
            w = dict(model.simulation["window"], zero_spikes=zero_spikes)
            sim = tn.Simulator(model, coding="ttfs-window", duration=model.simulation["duration"],
                               backend=args.backend, window=w, batch_size=100)
            r = sim.run(x_test[:n_snn], y_test[:n_snn])
            key = "" if zero_spikes else "_silent"
            row["snn_acc" + key] = r.accuracy
            row["snn_n" + key] = n_snn
            row["snn_agree_ann" + key] = float(np.mean(r.predictions == ann_pred[:n_snn]))
            row["snn_agree_est" + key] = float(np.mean(r.predictions == est[:n_snn]))
            row["spikes_per_neuron" + key] = r.spikes_per_neuron
            row["synops_vs_ann" + key] = r.synops_per_sample / ann_ops
        row["seconds"] = time.time() - start
        print(row, flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets-dir", type=Path, default=Path("/work/proto/mnist_nets"))
    p.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "datasets" / "mnist.npz",
                   help="MNIST (default: ../shared/datasets/mnist.npz from the repository root)")
    p.add_argument("--max-steps", type=int, default=64)
    p.add_argument("--fine", type=int, default=1024)
    p.add_argument("--snn-samples", type=int, default=10000)
    p.add_argument("--fine-samples", type=int, default=200)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--backend", default="reference", help="SNN backend (default: the numpy reference)")
    p.add_argument("--no-search", action="store_true",
                   help="the windows at the percentile with the measured split (no search of ranges and steps)")
    args = p.parse_args(argv)
    nets = [("digits_cnn", bundled_model(plain=True), bundled_calibration_set()[0], *bundled_test_set())]
    if args.mnist.exists():
        x_cal, x_test, y_test = mnist(args.mnist)
        for net in ("lenet5_avg", "lenet5_bn_max", "lenet_wide", "resnet_mnist"):
            path = args.nets_dir / f"{net}.onnx"
            if path.exists():
                nets.append((net, tn.import_model(path), x_cal, x_test, y_test))
    rows = []
    for name, ann, x_cal, x_test, y_test in nets:
        if args.only and name not in args.only:
            continue
        rows += measure(name, ann, x_cal, x_test, y_test, args)
    print("\n| net | steps | ANN | estimator (all test) | SNN (n) | SNN = ANN | spikes/neuron | synops / ANN ops "
          "| same, zero-level spikes left out |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['net']} | {r['setting']} | {r['ann_acc']:.4f} | {r['est_acc']:.4f} | "
              f"{r['snn_acc']:.4f} ({r['snn_n']}) | {r['snn_agree_ann']:.4f} | {r['spikes_per_neuron']:.3f} | "
              f"{r['synops_vs_ann']:.3f} | {r['spikes_per_neuron_silent']:.3f} spikes/neuron, "
              f"{r['synops_vs_ann_silent']:.3f} ops |")


if __name__ == "__main__":
    main()
