"""What every subcommand shares: the user-error exception, reading arrays,
the simulation options and the Simulator they make."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ..simulation import BACKENDS, Simulator


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_array(path: str, what: str) -> np.ndarray:
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


def add_sim_options(p: argparse.ArgumentParser):
    """Options shared by every command that simulates (unset ones keep the
    settings the model folder carries, the values of --config, or the
    Simulator's defaults)."""
    p.add_argument("--duration", type=float,
                   help="simulated time; steps = int(duration / dt) (default: the model folder's)")
    p.add_argument("--dt", type=float, help="time step (default: the model folder's, else 1.0; a new dt "
                                            "alone keeps the folder's number of steps)")
    p.add_argument("--v-thresh", type=float, help="base threshold (default: the model folder's, else 1.0)")
    p.add_argument("--tau-refrac", type=float, help="refractory period (default: duration)")
    p.add_argument("--leak", action=argparse.BooleanOptionalAction, default=None,
                   help="positive membranes lose 0.1*dt per step (default: the model folder's, else off)")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
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
                                    "softmax_to_relu; command-line options override it, and it "
                                    "replaces the model folder's settings")


def make_simulator(model, args):
    """A Simulator from the command line over --config if given, else over the
    settings the model folder carries."""
    kwargs = dict(duration=args.duration, dt=args.dt, v_thresh=args.v_thresh, tau_refrac=args.tau_refrac,
                  leak=args.leak, backend=args.backend, batch_size=args.batch_size, seed=args.seed,
                  early_stop=args.early_stop, ops_convention=args.ops_convention, num_threads=args.threads,
                  softmax_to_relu=args.softmax_to_relu, cuda_memory_limit=args.cuda_memory_limit)
    if args.config:
        return Simulator.from_toolbox_config(model, args.config, **kwargs)
    if args.duration is None and "duration" not in model.simulation:
        raise CliError("--duration is required: the model folder stores no simulation settings "
                       "(or give it in --config)")
    return Simulator.for_model(model, **kwargs)
