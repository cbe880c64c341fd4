"""Throughput of simulations spread over local Ray workers against the in-process run.

    python -m bench.ray_scaling [--nets lenet,vgg] [--samples 512,48] [--steps 64,100] [--workers 1,2]

For each network (bench/networks.py): samples/s of ``Simulator.run`` in this
process with 1 and with W threads, and of ``ttfs_native.ray.simulate`` with W
workers of one thread each (one local Ray for all of them, its start-up time
printed once; each timed call includes starting its actors and shipping the
model). Every Ray result is checked to equal the in-process one.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import ttfs_native as tn
from ttfs_native.ray import connect, simulate

from . import networks


def _ints(text):
    return [int(v) for v in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="lenet,vgg")
    p.add_argument("--samples", type=_ints, default=[512, 48], help="per network")
    p.add_argument("--steps", type=_ints, default=[64, 100], help="per network")
    p.add_argument("--workers", type=_ints, default=[1, 2])
    p.add_argument("--no-spike-times", action="store_true",
                   help="record_spike_times=False: only counts, operations and predictions come back")
    args = p.parse_args(argv)
    nets = args.nets.split(",")
    record = {"record_spike_times": False} if args.no_spike_times else {}
    rows = []
    start = time.perf_counter()
    with connect("local", num_cpus=max(args.workers)):
        print(f"local Ray started in {time.perf_counter() - start:.1f} s")
        for net, n, steps in zip(nets, args.samples, args.steps):
            x = networks.inputs(net, n)
            model = networks.build(net)
            for threads in sorted({1, max(args.workers)}):
                sim = tn.Simulator(model, duration=steps, backend="cpu", num_threads=threads, **record)
                t = time.perf_counter()
                want = sim.run(x)
                rows.append((net, n, steps, f"in-process, {threads} thread(s)", time.perf_counter() - t))
            for w in args.workers:
                t = time.perf_counter()
                got = simulate(model, x, workers=w, duration=steps, backend="cpu", **record)
                rows.append((net, n, steps, f"Ray, {w} worker(s) x 1 thread", time.perf_counter() - t))
                for key in ("counts", "synops_t", "stop_step"):
                    np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=key)
    print(f"{'net':6} {'N':>5} {'T':>4}  {'run':32} {'s':>8} {'samples/s':>10}")
    for net, n, steps, what, secs in rows:
        print(f"{net:6} {n:5d} {steps:4d}  {what:32} {secs:8.2f} {n / secs:10.1f}")


if __name__ == "__main__":
    main()
