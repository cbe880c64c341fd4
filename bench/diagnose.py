"""``python -m bench.diagnose``: where a converted SNN loses its ANN's decisions (bench/ACCURACY.md).

    python -m bench.diagnose MODEL_DIR --input x_test.npy [--num-samples 2000] [--duration 32 --dt 0.5 ...]

Simulates the model folder with its stored settings (flags override) and
prints, per spiking layer, how the first spikes follow the ANN's
activations (the normalised ANN the folder holds):

* ``positive``: neurons with a positive ANN activation; ``fired``: neurons
  that spiked within the run;
* ``missed``: positive but never fired (too small for the step budget, or
  held back by the dynamic threshold), as a fraction of the positive ones;
* ``premature``: fired although the ANN activation is <= 0 (fired on early
  positive inputs before the negative ones arrived), as a fraction of the
  fired ones;
* ``corr``: correlation of the activation with 1 / first-spike time over the
  neurons that are positive and fired (the TTFS code is time ~ 1/activation);
* ``median t``: median first-spike time (in steps).

Then the samples whose SNN prediction differs from the ANN's, by cause:
undecided (no output spike), tie (the ANN's class fired in the same step as
the winner and lost on the lowest index), order (the ANN's class fired
later), never (the ANN's class never fired).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def diagnose(model, x, **settings) -> str:
    from ttfs_native import Simulator
    from ttfs_native.model.ann import ann_predictions
    from ttfs_native.model.transforms import ann_view
    sim = Simulator.for_model(model, backend="cpu", **settings)
    r = sim.run(x)
    acts = ann_view(model).ann_forward(x, return_all=True)
    dt = sim.params.dt
    lines = [f"{len(x)} samples, {sim.steps} steps (dt {dt:g}, v_thresh {sim.params.v_thresh:g})",
             f"{'layer':<16} {'positive':>8} {'fired':>6} {'missed':>6} {'premature':>9} {'corr':>5} {'median t':>8}"]
    for s in model.spiking_layers:
        a = acts[s.name].reshape(len(x), -1)
        t = r.first_spike_times[s.name].reshape(len(x), -1) / dt
        pos, fired = a > 0, t > 0
        both = pos & fired
        corr = np.corrcoef(a[both], 1 / t[both])[0, 1] if both.sum() > 2 else float("nan")
        lines.append(f"{s.name:<16} {pos.mean():>8.3f} {fired.mean():>6.3f} "
                     f"{(pos & ~fired).sum() / max(pos.sum(), 1):>6.3f} "
                     f"{(fired & ~pos).sum() / max(fired.sum(), 1):>9.3f} {corr:>5.2f} "
                     f"{np.median(t[fired]) if fired.any() else 0:>8.1f}")
    ann = ann_predictions(model, x)
    t_out = r.first_spike_times[model.output_layer.name].reshape(len(x), -1)
    causes = {"undecided": 0, "tie": 0, "order": 0, "never": 0}
    for i in np.nonzero(r.predictions != ann)[0]:
        p, a = r.predictions[i], ann[i]
        if p < 0:
            causes["undecided"] += 1
        elif t_out[i, a] == 0:
            causes["never"] += 1
        elif t_out[i, a] == t_out[i, p]:
            causes["tie"] += 1
        else:
            causes["order"] += 1
    flips = sum(causes.values())
    lines.append(f"SNN differs from the ANN on {flips} samples ({flips / len(x):.2%}): "
                 + ", ".join(f"{k} {v}" for k, v in causes.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    from ttfs_native import load_model
    p = argparse.ArgumentParser(prog="python -m bench.diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--input", required=True)
    p.add_argument("--num-samples", type=int, default=2000)
    for flag in ("--duration", "--dt", "--v-thresh"):
        p.add_argument(flag, type=float)
    args = p.parse_args(argv)
    x = np.load(args.input)[:args.num_samples]
    print(diagnose(load_model(args.model_dir), x, duration=args.duration, dt=args.dt, v_thresh=args.v_thresh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
