"""What every subcommand shares: the user-error exception, reading arrays,
the simulation options and the Simulator they make."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
from pathlib import Path

import numpy as np

from ..simulation import BACKENDS, Simulator


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_array(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{what} file not found: {p}" if not p.exists() else f"{what} path {p} is not a file")
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise CliError(f"{what} file {p} is not a .npy file (numpy's format, written by numpy.save)"
                       + ("; .npz archives hold several arrays: save the one array with numpy.save"
                          if magic[:2] == b"PK" else ""))
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):   # an object array: numpy's message suggests allow_pickle, which is unsafe
            raise CliError(f"{what} file {p} holds Python objects, not numbers; save a numeric array "
                           f"(e.g. float32 or int64)") from None
        raise CliError(f"{what} file {p} could not be read as .npy: {e}") from None
    except (OSError, EOFError) as e:
        raise CliError(f"{what} file {p} could not be read as .npy (truncated or damaged?): {e}") from None


def _writable_folder(folder: Path, option: str, target: Path):
    """The nearest existing folder at or above ``folder`` must be a writable folder."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CliError(f"{option} {target}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CliError(f"{option} {target}: folder {probe} is not writable")


def output_file(path, option: str = "--out") -> Path:
    """Check a result file can be written, before any work is done."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{option} {p} is a folder; give a file name such as {p / 'results.npz'}")
    parent = p.parent
    if not parent.is_dir():
        raise CliError(f"{option} {p}: folder {parent} does not exist")
    _writable_folder(parent, option, p)
    if p.exists() and not os.access(p, os.W_OK):
        raise CliError(f"{option} {p} exists and is not writable")
    return p


def output_folder(path, option: str = "--out") -> Path:
    """Check a folder can be created (or written into), before any work is done."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{option} {p} is a file; give a folder")
    _writable_folder(p, option, p)
    return p


def output_model_folder(path, option: str = "--out") -> Path:
    """A folder to write a model into: new, or a model folder to replace; checked before any work."""
    p = output_folder(path, option)
    if p.is_dir() and any(p.iterdir()) and not (p / "model.json").is_file():
        raise CliError(f"{option} {p} is a non-empty folder that holds no model; choose a new folder")
    return p


def plot_folder(path, option: str = "--plot") -> Path:
    """Check the plots can be written (matplotlib present, folder writable), before any work."""
    if importlib.util.find_spec("matplotlib") is None:
        raise CliError(f"{option} needs matplotlib: pip install 'ttfs-native[plot]'")
    return output_folder(path, option)


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
                   help="simulated time; steps = int(duration / dt) (default: the model folder's, else 200 as in the API)")
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
    # Without --duration and stored settings: the API's default (SEMANTICS.md: duration 200)
    return Simulator.for_model(model, **kwargs)


def add_ray_options(p: argparse.ArgumentParser, runs: str, workers: str):
    """The Ray group with --ray and --workers (``runs``: what runs on Ray; ``workers``: help of --workers)."""
    g = p.add_argument_group("Ray (pip install 'ttfs-native[ray]')")
    g.add_argument("--ray", metavar="ADDRESS",
                   help=f"{runs} on Ray: 'local' starts one on this machine (shut down after), or a cluster's "
                        "address (ray://host:10001, host:6379, 'auto'); the result is the same as in this process")
    g.add_argument("--workers", type=int, help=workers)
    return g


def add_sweep_options(p: argparse.ArgumentParser):
    """--ray/--workers for the calibration's parameter sweep."""
    add_ray_options(p, "simulate the calibration's settings",
                    "Ray workers, one CPU thread each (default: this machine's cores with 'local', else what "
                    "the cluster holds)")


@contextlib.contextmanager
def sweep_mapper(args):
    """The calibration's mapper for --ray (None without), Ray connected meanwhile."""
    if args.ray is None:
        if args.workers is not None:
            raise CliError("--workers needs --ray")
        yield None
        return
    from ..ray import connect, default_workers, mapper, require_ray
    require_ray()   # or an ImportError saying how to install it
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    local = args.ray == "local"
    workers = args.workers or ((os.cpu_count() or 1) if local else None)
    with connect(args.ray, num_cpus=workers if local else None):
        yield mapper(workers or default_workers())
