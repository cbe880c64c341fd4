"""``ttfs-native info``: the build; a model folder's layers; or what a framework
file (.onnx, .h5, .keras) would be converted to, node by node."""
from __future__ import annotations

from pathlib import Path

from ..importers import IMPORTERS, import_model
from ..model import load_model
from ..model.settings import describe_simulation


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="show the build, a model folder's layers, or how a "
                                           ".onnx/.h5/.keras file would be converted")
    p.add_argument("model", nargs="?", help="model folder, or a trained network file (.onnx, .h5, .keras)")
    p.set_defaults(func=_info)


def _info(args) -> int:
    from .. import build_info
    for k, v in build_info().items():
        print(f"{k}: {v}")
    if not args.model:
        return 0
    path = Path(args.model)
    if path.suffix.lower() in IMPORTERS and not path.is_dir():
        model = import_model(path)   # unsupported nodes: one error naming all of them
        print(f"\n{path.name} converts to this model (ttfs-native convert writes it as a folder):")
        print(model.summary())
        print("\nhow each node was converted:")
        for line in model.metadata.get("import_log", []):
            print(f"  {line}")
    else:
        model = load_model(path)
        print(model.summary())
        if not model.simulation:   # (a folder's settings are part of its summary)
            print(describe_simulation(model.simulation))
    return 0
