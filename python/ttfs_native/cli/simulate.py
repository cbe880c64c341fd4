"""``ttfs-native simulate``: a model folder on an input array, in this process or on Ray."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..model import load_model
from ..simulation.metrics import ENERGY_TABLES
from .common import (CliError, add_ray_options, add_sim_options, load_array, make_simulator, output_file,
                     plot_folder)


def add_parser(subparsers):
    p = subparsers.add_parser("simulate", help="simulate a model folder on an input array")
    p.add_argument("model_dir", help="model folder (model.json + weights.npz)")
    p.add_argument("--input", required=True,
                   help="(N, *input_shape) .npy, channels-last; with --ray also a directory of .npy shards "
                        "or a Parquet file or directory (one sample per row), results then go to the "
                        "directory --out as shards")
    p.add_argument("--labels", help="(N,) .npy of class indices")
    p.add_argument("--num-samples", type=int, default=None, help="simulate only the first N samples")
    p.add_argument("--out", help="write the results to this .npz (a directory for shard inputs)")
    p.add_argument("--plot", help="write PNG plots into this folder (needs matplotlib)")
    p.add_argument("--energy", nargs="?", const="45nm-fp32", choices=sorted(ENERGY_TABLES), metavar="TABLE",
                   help="add an energy estimate per sample from per-operation energies "
                        f"({', '.join(sorted(ENERGY_TABLES))}; default 45nm-fp32; docs/METRICS.md)")
    add_sim_options(p)
    r = add_ray_options(p, "run the simulation", "Ray workers, each with one Simulator (default: as many as "
                                                  "the cluster's CPUs, or GPUs, hold)")
    r.add_argument("--chunk-size", type=int, help="samples per Ray task (and per result shard)")
    r.add_argument("--gpus-per-worker", type=float,
                   help="GPUs per worker (default 1 with --backend cuda, else 0; with GPUs the "
                        "backend 'auto' is cuda)")
    r.add_argument("--input-column", default="image", help="Parquet column of the samples (default image)")
    r.add_argument("--label-column", help="Parquet column of the labels")
    p.set_defaults(func=_simulate)


def _simulate(args) -> int:
    if args.ray is not None:
        return _simulate_on_ray(args)
    for name in ("workers", "chunk_size", "gpus_per_worker", "label_column"):
        if getattr(args, name) is not None:
            raise CliError(f"--{name.replace('_', '-')} needs --ray")
    p = Path(args.input)
    if (p.is_dir() and (any(p.glob("*.npy")) or any(p.glob("*.parquet")))) \
            or (p.is_file() and p.suffix == ".parquet"):
        what = "a folder, not a file" if p.is_dir() else "Parquet"
        raise CliError(f"--input {p} is {what}; folders of .npy shards and Parquet input are read "
                       "through Ray: add --ray local (or a cluster's address)")
    out, plots = _outputs(args)
    model = load_model(args.model_dir)
    x = load_array(args.input, "input")
    labels = load_array(args.labels, "labels") if args.labels else None
    sim = make_simulator(model, args)
    x, labels = _first_samples(args, sim, x, labels)
    return _report(args, sim.run(x, labels), model, x, out, plots)


def _outputs(args):
    """The result file and plot folder, checked before any work."""
    return (output_file(args.out) if args.out else None), (plot_folder(args.plot) if args.plot else None)


def _first_samples(args, sim, x, labels):
    limit = _limit(args, sim)
    if limit is not None:
        x = x[:limit]
        labels = labels[:limit] if labels is not None else None
    return x, labels


def _limit(args, sim):
    limit = args.num_samples if args.num_samples is not None else sim.num_to_test
    if limit is not None and limit < 1:
        raise CliError(f"--num-samples must be >= 1, got {limit}")
    return limit


def _report(args, result, model, x, out, plots) -> int:
    print(result.summary(energy=args.energy))
    if out:
        result.to_npz(out)
        print(f"results written to {out}")
    if plots:
        from ..plots import write_plots
        for path in write_plots(result, model, x, plots):
            print(f"plot written to {path}")
    return 0


def _simulate_on_ray(args) -> int:
    from ..ray import connect, require_ray, shard_kind, simulate, simulate_shards
    require_ray()  # says how to install it
    for name in ("workers", "chunk_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.gpus_per_worker is not None and not args.gpus_per_worker >= 0:
        raise CliError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    model = load_model(args.model_dir)
    # Checks the options here, with the numpy backend (no engine is built); the
    # workers build their own Simulators with the backend asked for.
    sim = make_simulator(model, argparse.Namespace(**dict(vars(args), backend="reference")))
    p = sim.params
    options = dict(duration=p.duration, dt=p.dt, v_thresh=p.v_thresh, tau_refrac=p.tau_refrac, leak=p.leak,
                   seed=p.seed, early_stop=p.early_stop, ops_convention=sim.ops_convention,
                   backend=args.backend, batch_size=args.batch_size, num_threads=args.threads,
                   options=sim.options)
    options = {k: v for k, v in options.items() if v is not None}
    num_cpus = args.threads or 1
    num_gpus = args.gpus_per_worker if args.gpus_per_worker is not None else float(args.backend == "cuda")
    workers = args.workers
    if args.ray == "local" and workers is None:
        workers = max(1, (os.cpu_count() or 1) // num_cpus)
    kind = shard_kind(args.input)
    if kind is None:
        out, plots = _outputs(args)
        x = load_array(args.input, "input")
        labels = load_array(args.labels, "labels") if args.labels else None
        x, labels = _first_samples(args, sim, x, labels)
    elif args.labels or args.plot or args.energy:
        raise CliError("--labels, --plot and --energy take a single .npy input; a Parquet input's labels "
                       "come from --label-column")
    elif not args.out:
        raise CliError("a shard input needs --out DIR for the result shards")
    elif Path(args.out).exists() and (not Path(args.out).is_dir() or any(Path(args.out).iterdir())):
        raise CliError(f"--out {args.out} exists and is not an empty folder")
    with connect(args.ray, num_cpus=workers * num_cpus if args.ray == "local" else None):
        run = dict(workers=workers, num_cpus=num_cpus, num_gpus=num_gpus, **options)
        if kind is None:
            result = simulate(sim.model, x, labels, chunk_size=args.chunk_size, **run)
            return _report(args, result, model, x, out, plots)
        index = simulate_shards(sim.model, args.input, args.out, chunk_size=args.chunk_size,
                                input_column=args.input_column, label_column=args.label_column,
                                limit=_limit(args, sim), **run)
    n, wall = index["samples"], index["wall_time"]
    print(f"samples {n} in {len(index['parts'])} parts, wall time {wall:.3f} s, {n / wall:.1f} samples/s")
    if "accuracy" in index:
        print(f"SNN accuracy {index['accuracy']:.4f}")
    print(f"result shards written to {args.out} (index.json)")
    return 0
