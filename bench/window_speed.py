"""CPU cost per step of the ttfs-window coding against the original coding
(issue 15: "CPU speed per step at least the original coding's on every bench net").

    python -m bench.window_speed [--nets lenet,vgg] [--batch 16] [--threads 2] [--max-steps 64]

Per bench network (bench/networks.py): the original coding at its default
steps, and the same ANN converted with ``convert_window`` (64 steps in total
by default, calibrated on 64 benchmark inputs), run to its read step. Both on
the CPU backend, same inputs, same threads; median wall time of one batch
(measure.timed), per simulated step and sample.
"""
from __future__ import annotations

import argparse
import os

import ttfs_native as tn
from ttfs_native.conversion.window import convert_window

from . import measure, networks
from .harness import DEFAULT_STEPS

BATCH = {"lenet": 16, "lenet_wide": 16, "mobilenet": 8, "vgg": 2, "vgg_max": 2}


def measure_net(net: str, batch: int | None, threads: int, max_steps: int) -> list:
    batch = batch or BATCH[net]
    x = networks.inputs(net, max(64, batch))
    ann = networks.build(net, x)
    window = convert_window(ann, x[:64], max_steps=max_steps)
    rows = []
    for coding, model, steps in (("ttfs-dyn-thresh", ann, DEFAULT_STEPS[net]),
                                 ("ttfs-dyn-thresh", ann, int(window.simulation["duration"])),
                                 ("ttfs-window", window, int(window.simulation["duration"]))):
        sim = tn.Simulator(model, coding=coding, backend="cpu", duration=steps, num_threads=threads)
        timing = measure.timed(lambda: sim.run(x[:batch]), min_time=2.0, max_time=30.0)
        seconds = timing["median"]
        result = timing["last"]
        rows.append(dict(net=net, coding=coding, batch=batch, steps=steps, ms_batch=1e3 * seconds,
                         us_step_sample=1e6 * seconds / steps / batch,
                         spikes_per_neuron=result.spikes_per_neuron,
                         synops_ann=result.synops_per_sample / result.ann_ops))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="lenet,lenet_wide,mobilenet,vgg,vgg_max")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=64)
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()}; threads {args.threads}")
    print("| net | coding | batch | steps | ms/batch | us/step/sample | spikes/neuron | synops/ANN |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for net in args.nets.split(","):
        for r in measure_net(net, args.batch, args.threads, args.max_steps):
            print(f"| {r['net']} | {r['coding']} | {r['batch']} | {r['steps']} | {r['ms_batch']:.1f} | "
                  f"{r['us_step_sample']:.1f} | {r['spikes_per_neuron']:.3f} | {r['synops_ann']:.3f} |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
