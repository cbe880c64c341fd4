"""CPU cost per step of the ttfs-window coding against the original coding
(issue 15: "CPU speed per step at least the original coding's on every bench net").

    python -m bench.window_speed [--nets lenet,vgg] [--batch 16] [--threads 2] [--max-steps 64]
    python -m bench.window_speed --backend cuda --nets lenet,vgg,resnet --batch 256 --rounds 5

Per bench network (bench/networks.py): the original coding at its default
steps, and the same ANN converted with ``convert_window`` (64 steps in total
by default, calibrated on 64 benchmark inputs), run to its read step; where
the net has average pooling, also converted without folding it. Both on
the CPU backend, same inputs, same threads. Per step and sample: the fastest of ``--rounds``
engine calls (``engine.run``, interleaved between the codings so that the
machine's load drifts over all alike), in wall-clock time and in the
process's CPU time (all threads; steadier on a shared machine); also the median ``Simulator.run``
(with its Python checks and result assembly, the same for both codings).
With ``--backend cuda`` the CUDA engine is timed (wall time; the CPU-time
columns then mean little) and every configuration's result is compared
with the CPU backend's, predictions and first-spike times bit for bit.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import ttfs_native as tn
from ttfs_native.conversion.window import convert_window

from . import measure, networks
from .harness import DEFAULT_STEPS

BATCH = {"lenet": 16, "lenet_wide": 16, "mobilenet": 8, "vgg": 2, "vgg_max": 2, "resnet": 16}


def _engine_call(sim, x):
    """engine.run on x alone (the per-step cost without Simulator.run's Python around it)."""
    core = tn.simulation.simulator._core()
    n, classes, steps = len(x), sim.model.num_classes, sim.steps
    spiking = sim.model.spiking_layers
    window = sim._window_plan is not None
    results = core.Results(counts=np.zeros((n, classes, steps), np.int32),
                           first_spike=[np.zeros((n, s.size), np.float32) for s in spiking],
                           spike_counts=np.zeros((n, len(spiking)), np.int64), synops=np.zeros((n, steps)),
                           stop_step=np.zeros(n, np.int32),
                           output_membrane=np.zeros((n, classes), np.float32) if window else None)
    inputs = core.Input(np.ascontiguousarray(x))
    return lambda: sim._engine.run(inputs, results)


def _same_results(a, b) -> bool:
    """Predictions and every layer's first-spike times equal (bit for bit)."""
    return np.array_equal(a.predictions, b.predictions) and all(
        np.array_equal(t, b.first_spike_times[name]) for name, t in a.first_spike_times.items())


def measure_net(net: str, batch: int | None, threads: int, max_steps: int, rounds: int,
                backend: str = "cpu") -> list:
    batch = batch or BATCH[net]
    x = networks.inputs(net, max(64, batch))
    ann = networks.build(net, x)
    window = convert_window(ann, x[:64], max_steps=max_steps)
    read = int(window.simulation["duration"])
    configs = [("ttfs-dyn-thresh", ann, DEFAULT_STEPS[net]), ("ttfs-window", window, read)]
    if read != DEFAULT_STEPS[net]:
        configs.insert(1, ("ttfs-dyn-thresh", ann, read))
    if any(spec.type == "AveragePooling2D" for spec in ann.layers):
        # folding average pooling (the default) multiplies the absorbing layer's synapses; without it
        unfolded = convert_window(ann, x[:64], max_steps=max_steps, fold_pooling=False)
        configs.append(("ttfs-window, pooling not folded", unfolded, int(unfolded.simulation["duration"])))
    sims = [tn.Simulator(m, coding=c.split(",")[0], backend=backend, duration=steps, num_threads=threads)
            for c, m, steps in configs]
    calls = [_engine_call(sim, x[:batch]) for sim in sims]
    best = [float("inf")] * len(sims)
    best_cpu = [float("inf")] * len(sims)
    for _ in range(rounds):   # interleaved, so that the machine's load drifts over all alike
        for k, call in enumerate(calls):
            c0, t0 = time.process_time(), time.perf_counter()
            call()
            best[k] = min(best[k], time.perf_counter() - t0)
            best_cpu[k] = min(best_cpu[k], time.process_time() - c0)
    rows = []
    for (coding, _, steps), sim, engine, cpu in zip(configs, sims, best, best_cpu):
        timing = measure.timed(lambda: sim.run(x[:batch]), min_time=1.0, max_time=10.0)
        result = timing["last"]
        same = None
        if backend != "cpu":   # the device's results against the CPU backend's, bit for bit
            cpu_sim = tn.Simulator(sim.model, coding=coding.split(",")[0], backend="cpu", duration=steps,
                                   num_threads=threads)
            same = _same_results(result, cpu_sim.run(x[:batch]))
        rows.append(dict(net=net, coding=coding, batch=batch, steps=steps, engine_ms=1e3 * engine, same_as_cpu=same,
                         run_ms=1e3 * timing["median"], us_step_sample=1e6 * engine / steps / batch,
                         cpu_ms=1e3 * cpu, cpu_us_step_sample=1e6 * cpu / steps / batch,
                         spikes_per_neuron=result.spikes_per_neuron,
                         synops_ann=result.synops_per_sample / result.ann_ops))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="lenet,lenet_wide,mobilenet,vgg,vgg_max")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15, help="engine calls per configuration (the fastest counts)")
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda"),
                   help="engine to time (cuda: wall time, and each result checked against the CPU backend's)")
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()}; threads {args.threads}; backend {args.backend}")
    check = args.backend != "cpu"
    print("| net | coding | batch | steps | engine ms/batch | us/step/sample | engine CPU ms | CPU us/step/sample "
          "| Simulator.run ms | spikes/neuron | synops/ANN |" + (" = CPU backend |" if check else ""))
    print("| --- " * (12 if check else 11) + "|")
    failed = False
    for net in args.nets.split(","):
        for r in measure_net(net, args.batch, args.threads, args.max_steps, args.rounds, args.backend):
            failed |= r["same_as_cpu"] is False
            print(f"| {r['net']} | {r['coding']} | {r['batch']} | {r['steps']} | {r['engine_ms']:.1f} | "
                  f"{r['us_step_sample']:.1f} | {r['cpu_ms']:.1f} | {r['cpu_us_step_sample']:.1f} | "
                  f"{r['run_ms']:.1f} | {r['spikes_per_neuron']:.3f} | "
                  f"{r['synops_ann']:.3f} |" + (f" {'yes' if r['same_as_cpu'] else 'NO'} |" if check else ""),
                  flush=True)
    print(f"load average after: {os.getloadavg()}")
    if failed:
        raise SystemExit("error: a device result differs from the CPU backend's")


if __name__ == "__main__":
    main()
