"""``ttfs-native info``: the build, and a model's layers."""
from __future__ import annotations

from ..model import load_model
from ..model.settings import describe_simulation


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="show the build (and a model's layers)")
    p.add_argument("model_dir", nargs="?")
    p.set_defaults(func=_info)


def _info(args) -> int:
    from .. import build_info
    for k, v in build_info().items():
        print(f"{k}: {v}")
    if args.model_dir:
        model = load_model(args.model_dir)
        print(model.summary())
        if not model.simulation:
            print(describe_simulation(model.simulation))
    return 0
