"""The ``ttfs-native`` command line.

Subcommands live in small modules that each provide ``add_parser(subparsers)``
(which sets ``func``) so that this file stays a dispatcher.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

# Modules that contribute subcommands besides the ones defined here.
_SUBCOMMAND_MODULES = ("ttfs_native.demo", "ttfs_native.convert")


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _load_array(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{what} file not found: {p}")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CliError(f"{what} file {p} could not be read as .npy: {e}") from None


def add_sim_options(p: argparse.ArgumentParser, duration_default=None):
    """Options shared by every command that simulates."""
    p.add_argument("--duration", type=float, required=duration_default is None, default=duration_default,
                   help="simulated time; steps = int(duration / dt)")
    p.add_argument("--dt", type=float, default=1.0, help="time step (default 1.0)")
    p.add_argument("--v-thresh", type=float, default=1.0, help="base threshold (default 1.0)")
    p.add_argument("--tau-refrac", type=float, default=None, help="refractory period (default: duration)")
    p.add_argument("--leak", action="store_true", help="positive membranes lose 0.1*dt per step")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "reference"])
    p.add_argument("--batch-size", type=int, default=None, help="samples per backend call")
    p.add_argument("--seed", type=int, default=0, help="seed of the softmax output's random stream")
    p.add_argument("--early-stop", action="store_true", help="stop each sample once its output fired")
    p.add_argument("--ops-convention", default="exact", choices=["exact", "snntoolbox"])
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")


def simulator_kwargs(args) -> dict:
    return dict(duration=args.duration, dt=args.dt, v_thresh=args.v_thresh, tau_refrac=args.tau_refrac,
                leak=args.leak, backend=args.backend, batch_size=args.batch_size, seed=args.seed,
                early_stop=args.early_stop, ops_convention=args.ops_convention, num_threads=args.threads)


def _simulate(args) -> int:
    from .model import load_model
    from .simulator import Simulator

    model = load_model(args.model_dir)
    x = _load_array(args.input, "input")
    labels = _load_array(args.labels, "labels") if args.labels else None
    if args.num_samples is not None:
        x = x[:args.num_samples]
        labels = labels[:args.num_samples] if labels is not None else None
    sim = Simulator(model, **simulator_kwargs(args))
    result = sim.run(x, labels)
    print(result.summary())
    if args.out:
        result.to_npz(args.out)
        print(f"results written to {args.out}")
    if args.plot:
        from .plots import write_plots
        for path in write_plots(result, model, x, Path(args.plot)):
            print(f"plot written to {path}")
    return 0


def _info(args) -> int:
    from . import build_info
    for k, v in build_info().items():
        print(f"{k}: {v}")
    if args.model_dir:
        from .model import load_model
        print(load_model(args.model_dir).summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttfs-native", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate a model folder on an input array")
    p.add_argument("model_dir", help="model folder (model.json + weights.npz)")
    p.add_argument("--input", required=True, help="(N, *input_shape) .npy, channels-last")
    p.add_argument("--labels", help="(N,) .npy of class indices")
    p.add_argument("--num-samples", type=int, default=None, help="simulate only the first N samples")
    p.add_argument("--out", help="write the results to this .npz")
    p.add_argument("--plot", help="write PNG plots into this folder (needs matplotlib)")
    add_sim_options(p)
    p.set_defaults(func=_simulate)

    p = sub.add_parser("info", help="show the build (and a model's layers)")
    p.add_argument("model_dir", nargs="?")
    p.set_defaults(func=_info)

    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError, MemoryError) as e:
        print(f"ttfs-native {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
