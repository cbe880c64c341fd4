"""``python -m bench``: benchmark ttfs-native against its peers (run from the repository root).

Examples::

    python -m bench                           # the reference configurations on every device
    python -m bench --quick                   # small batches and steps (< 2 minutes on 2 cores)
    python -m bench --device cpu --nets lenet --batch 16 --steps 50 --json out.json
    python -m bench --save-models models/ --save-only
"""
from __future__ import annotations

import argparse
import sys

from . import harness, networks


def _csv(kind):
    def parse(text):
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small batches and steps, few repeats (whole CPU run < 2 minutes on 2 cores)")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="where to run: cpu, cuda or all available (default: all)")
    p.add_argument("--nets", type=_csv(str), default=None,
                   help=f"comma-separated networks: {','.join(networks.NETWORKS)} (default: the "
                        "reference configurations' networks)")
    p.add_argument("--batch", type=_csv(int), default=None,
                   help="comma-separated batch sizes (replaces the reference configurations)")
    p.add_argument("--steps", type=_csv(int), default=None,
                   help="comma-separated numbers of time steps (replaces the reference configurations)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for ttfs-cpu and PyTorch (default: all cores)")
    p.add_argument("--early-stop", action="store_true",
                   help="per-sample early stop for every implementation (default: off)")
    p.add_argument("--cuda-schedules", type=_csv(str), default=("step", "layer"),
                   help="time loops of ttfs-cuda to time, each a row: step (the default one, one "
                        "graph launch per step) and/or layer (cuda_schedule=layer, one launch "
                        "per node); default: step,layer")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peers even if torch is installed")
    p.add_argument("--no-reference", action="store_true", help="skip the numpy reference backend")
    p.add_argument("--torch-samples", type=int, default=None,
                   help="samples the PyTorch loop simulates (default: the whole batch on a GPU, "
                        f"{harness.TORCH_CPU_SAMPLES} on the CPU); times are scaled per sample")
    p.add_argument("--torch-record", action="store_true",
                   help="time the PyTorch loop while it records first-spike times, spike counts and "
                        "synaptic operations like our backends (default: it records class counts only "
                        "when timed; the verification run always records everything)")
    p.add_argument("--no-thread-probe", action="store_true",
                   help="CPU torch peers always use --threads (default: the faster of --threads and 1 "
                        "on a short probe, which protects them on a busy machine)")
    p.add_argument("--reference-samples", type=int, default=None,
                   help=f"samples the reference backend simulates (default {harness.REFERENCE_SAMPLES})")
    p.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="write the report as JSON")
    p.add_argument("--save-models", default=None, metavar="DIR",
                   help="also write the benchmark networks as model folders DIR/<net> (+ DIR/<net>.inputs.npy)")
    p.add_argument("--save-only", action="store_true", help="with --save-models: save and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or table on stdout")
    return p


def options(argv=None) -> harness.Options:
    args = parser().parse_args(argv)
    if args.nets:
        unknown = [n for n in args.nets if n not in networks.NETWORKS]
        if unknown:
            parser().error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(networks.NETWORKS)}")
    for name in ("batch", "steps"):
        values = getattr(args, name)
        if values is not None and (not values or min(values) < 1):
            parser().error(f"--{name} needs positive integers")
    if args.threads is not None and args.threads < 1:
        parser().error("--threads must be >= 1")
    if args.save_only and not args.save_models:
        parser().error("--save-only needs --save-models DIR")
    bad = [s for s in args.cuda_schedules if s not in ("step", "layer")]
    if bad or not args.cuda_schedules:
        parser().error(f"--cuda-schedules takes step and/or layer, got {','.join(args.cuda_schedules)}")
    devices = ("cpu", "cuda") if args.device == "all" else (args.device,)
    return harness.Options(devices=devices, nets=args.nets, batches=args.batch, steps=args.steps,
                           cuda_schedules=tuple(args.cuda_schedules),
                           threads=args.threads, quick=args.quick, early_stop=args.early_stop,
                           use_torch=not args.no_torch, use_reference=not args.no_reference,
                           torch_samples=args.torch_samples, reference_samples=args.reference_samples,
                           torch_record=args.torch_record, thread_probe=not args.no_thread_probe,
                           json_path=args.json_path, save_models=args.save_models,
                           save_only=args.save_only, verbose=not args.quiet)


def main(argv=None) -> dict:
    return harness.run(options(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
