"""Write the golden cases of the ttfs-window coding (tests/data/window/).

    PYTHONPATH=python python3 scripts/make_window_golden.py [CASE ...]   # default: every case

Each case folder holds a converted model folder (``model/``, whose
model.json carries the window settings), the input ``x.npy``, labels
``y.npy`` and ``expected.npz``: everything the numpy reference
(docs/WINDOW_SEMANTICS.md) computes for them. The CPU and CUDA backends must
reproduce these arrays bit for bit. Regenerate only when the semantics
change on purpose (the test compares the reference against these files).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import netgen  # noqa: E402
import ttfs_native as tn  # noqa: E402
from ttfs_native.conversion.window import convert_window  # noqa: E402
from ttfs_native.simulation.window_plan import plan_for  # noqa: E402
from ttfs_native.simulation.window_reference import simulate  # noqa: E402

OUT = ROOT / "tests" / "data" / "window"
# case name -> (architecture, signed input, zero_spikes, max_steps)
# (residual_mixed: its output is an Add, which this coding does not read; its clip is not supported)
CASES = {f"{arch}": (arch, False, True, 40) for arch in netgen.ARCHITECTURES
         if arch not in ("upsample_clip", "residual_mixed")}
CASES["upsample"] = ("upsample_clip", False, True, 40)   # without the clipping (not supported yet)
CASES.update({"conv_strides_dilation_signed": ("conv_strides_dilation", True, True, 40),
              "branches_concat_signed_silent": ("branches_concat", True, False, 48),
              "mlp_fine": ("mlp", False, True, 600),
              "resnet_blocks_signed_silent": ("resnet_blocks", True, False, 48)})
SAMPLES = 6


def expected_arrays(model, x, labels) -> dict:
    sim = tn.Simulator(model, coding="ttfs-window", duration=model.simulation["duration"], backend="reference")
    result = sim.run(x, labels)
    raw = simulate(model, x, sim.params, sim.fanouts, plan_for(model))
    arrays = {"predictions": result.predictions, "counts": result.counts, "synops_t": result.synops_t,
              "stop_step": result.stop_step, "accuracy_t": result.accuracy_t,
              "output_membrane": raw["output_membrane"]}
    for name, times in result.first_spike_times.items():
        arrays[f"spike_times/{name}"] = times
    for name, counts in result.spike_counts.items():
        arrays[f"spike_counts/{name}"] = counts
    return arrays


def main(names=None):
    unknown = sorted(set(names or ()) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {sorted(CASES)}")
    if not names and OUT.exists():
        shutil.rmtree(OUT)
    for case, (arch, signed, zero_spikes, max_steps) in CASES.items():
        if names and case not in names:
            continue
        ann, x, labels = netgen.make(arch, n=SAMPLES, seed=7, signed_input=signed)
        if any(s.max_value is not None for s in ann.layers if s.is_weighted):
            layers = [{k: v for k, v in s.to_json().items() if k != "max_value"} for s in ann.layers]
            ann = netgen.normalised_model(ann.input_shape, layers, x, seed=7)
        model = convert_window(ann, x, max_steps=max_steps, percentile=99.0, zero_spikes=zero_spikes)
        folder = OUT / case
        if folder.exists():
            shutil.rmtree(folder)
        tn.save_model(model, folder / "model")
        np.save(folder / "x.npy", x)
        np.save(folder / "y.npy", labels)
        np.savez_compressed(folder / "expected.npz", **expected_arrays(tn.load_model(folder / "model"), x, labels))
        print(case, model.simulation["window"]["steps"], "read at", int(model.simulation["duration"]))


if __name__ == "__main__":
    main(sys.argv[1:])
