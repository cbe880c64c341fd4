"""``ttfs-native simulate``: a model folder on an input array."""
from __future__ import annotations

from ..model import load_model
from ..simulation.metrics import ENERGY_TABLES
from .common import CliError, add_sim_options, load_array, make_simulator, output_file, plot_folder


def add_parser(subparsers):
    p = subparsers.add_parser("simulate", help="simulate a model folder on an input array")
    p.add_argument("model_dir", help="model folder (model.json + weights.npz)")
    p.add_argument("--input", required=True, help="(N, *input_shape) .npy, channels-last")
    p.add_argument("--labels", help="(N,) .npy of class indices")
    p.add_argument("--num-samples", type=int, default=None, help="simulate only the first N samples")
    p.add_argument("--out", help="write the results to this .npz")
    p.add_argument("--plot", help="write PNG plots into this folder (needs matplotlib)")
    p.add_argument("--energy", nargs="?", const="45nm-fp32", choices=sorted(ENERGY_TABLES), metavar="TABLE",
                   help="add an energy estimate per sample from per-operation energies "
                        f"({', '.join(sorted(ENERGY_TABLES))}; default 45nm-fp32; docs/METRICS.md)")
    add_sim_options(p)
    p.set_defaults(func=_simulate)


def _simulate(args) -> int:
    out = output_file(args.out) if args.out else None   # checked before any work
    plots = plot_folder(args.plot) if args.plot else None
    model = load_model(args.model_dir)
    x = load_array(args.input, "input")
    labels = load_array(args.labels, "labels") if args.labels else None
    sim = make_simulator(model, args)
    limit = args.num_samples if args.num_samples is not None else sim.num_to_test
    if limit is not None:
        if limit < 1:
            raise CliError(f"--num-samples must be >= 1, got {limit}")
        x = x[:limit]
        labels = labels[:limit] if labels is not None else None
    result = sim.run(x, labels)
    print(result.summary(energy=args.energy))
    if out:
        result.to_npz(out)
        print(f"results written to {out}")
    if plots:
        from ..plots import write_plots
        for path in write_plots(result, model, x, plots):
            print(f"plot written to {path}")
    return 0
