"""The ``ttfs-native`` command line.

Subcommands live in small modules that each provide ``add_parser(subparsers)``
(which sets ``func``) so that this file stays a dispatcher.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
import warnings
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


def byte_count(text: str) -> int:
    """'1500000', '512M', '8G' (binary units K, M, G) as a number of bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 1500000, 512M or 8G, got {text!r}") from None
    if not (math.isfinite(value) and value * scale >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value * scale)


def add_sim_options(p: argparse.ArgumentParser, duration_default=None):
    """Options shared by every command that simulates (unset ones keep the
    Simulator's defaults, or the values of --config)."""
    p.add_argument("--duration", type=float, default=duration_default,
                   help="simulated time; steps = int(duration / dt)"
                        + ("" if duration_default is None else f" (default {duration_default})"))
    p.add_argument("--dt", type=float, help="time step (default 1.0)")
    p.add_argument("--v-thresh", type=float, help="base threshold (default 1.0)")
    p.add_argument("--tau-refrac", type=float, help="refractory period (default: duration)")
    p.add_argument("--leak", action="store_true", default=None, help="positive membranes lose 0.1*dt per step")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "reference"])
    p.add_argument("--batch-size", type=int, help="samples per backend call")
    p.add_argument("--seed", type=int, help="seed of the softmax output's random stream (default 0)")
    p.add_argument("--early-stop", action="store_true", default=None,
                   help="stop each sample once its output fired")
    p.add_argument("--ops-convention", choices=["exact", "snntoolbox"], help="default: exact")
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--cuda-memory-limit", type=byte_count, metavar="BYTES",
                   help="GPU memory the cuda backend's buffers may take, e.g. 8G (default: what is "
                        "free); larger batches run in chunks")
    p.add_argument("--softmax-to-relu", action="store_true", default=None,
                   help="simulate a softmax output layer as ReLU (SNN Toolbox option)")
    p.add_argument("--config", help="SNN Toolbox config.ini: [simulation] duration, dt, batch_size, "
                                    "num_to_test, [cell] v_thresh, tau_refrac, leak, [conversion] "
                                    "softmax_to_relu; command-line options override it")


def make_simulator(model, args):
    """A Simulator from the command line (and --config if given)."""
    from .simulator import Simulator
    kwargs = dict(duration=args.duration, dt=args.dt, v_thresh=args.v_thresh, tau_refrac=args.tau_refrac,
                  leak=args.leak, backend=args.backend, batch_size=args.batch_size, seed=args.seed,
                  early_stop=args.early_stop, ops_convention=args.ops_convention, num_threads=args.threads,
                  softmax_to_relu=args.softmax_to_relu, cuda_memory_limit=args.cuda_memory_limit)
    if args.config:
        return Simulator.from_toolbox_config(model, args.config, **kwargs)
    if args.duration is None:
        raise CliError("--duration is required (or give it in --config)")
    return Simulator(model, **{k: v for k, v in kwargs.items() if v is not None})


def _simulate(args) -> int:
    from .model import load_model

    model = load_model(args.model_dir)
    x = _load_array(args.input, "input")
    labels = _load_array(args.labels, "labels") if args.labels else None
    sim = make_simulator(model, args)
    limit = args.num_samples if args.num_samples is not None else sim.num_to_test
    if limit is not None:
        if limit < 1:
            raise CliError(f"--num-samples must be >= 1, got {limit}")
        x = x[:limit]
        labels = labels[:limit] if labels is not None else None
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
    parser = argparse.ArgumentParser(
        prog="ttfs-native",
        description="Simulate converted spiking neural networks with time-to-first-spike coding and a "
                    "dynamic threshold (SNN Toolbox's ttfs_dyn_thresh semantics) on CPU or GPU.")
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


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"ttfs-native: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except (CliError, ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError, MemoryError) as e:
        print(f"ttfs-native {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ttfs-native demo | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
