"""Read the simulation settings of an SNN Toolbox config file (``config.ini``).

Only keys that mean the same thing here are mapped; every other key present
in the file is named in a warning, so nothing is silently ignored. Settings
that would change the semantics (another spike code or simulator, state not
reset between samples) are errors.
"""
from __future__ import annotations

import configparser
import warnings
from pathlib import Path

# (section, key) -> (our name, parser)
_MAPPED = {
    ("simulation", "duration"): ("duration", "float"),
    ("simulation", "dt"): ("dt", "float"),
    ("simulation", "batch_size"): ("batch_size", "int"),
    ("simulation", "num_to_test"): ("num_to_test", "int"),
    ("cell", "v_thresh"): ("v_thresh", "float"),
    ("cell", "tau_refrac"): ("tau_refrac", "float"),
    ("cell", "leak"): ("leak", "bool"),
    ("conversion", "softmax_to_relu"): ("softmax_to_relu", "bool"),
}
# Keys whose only accepted value is the one our semantics implements.
_REQUIRED = {
    ("conversion", "spike_code"): "ttfs_dyn_thresh",
    ("simulation", "simulator"): "INI",
    ("simulation", "reset_between_nth_sample"): "1",
}


class ConfigWarning(UserWarning):
    """An SNN Toolbox config key that ttfs-native does not use."""


def read_toolbox_config(path) -> dict:
    """Settings of ``path`` as keyword arguments: Simulator arguments plus
    ``num_to_test`` and ``softmax_to_relu`` when present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error as e:
        raise ValueError(f"{path} is not a valid config file: {e}") from None
    settings, unused = {}, []
    for section in parser.sections():
        for key, raw in parser.items(section, raw=True):
            where = (section, key)
            if where in _REQUIRED:
                if raw.strip().strip("'\"") != _REQUIRED[where]:
                    raise ValueError(f"{path}: [{section}] {key} = {raw!r} is not supported; ttfs-native "
                                     f"simulates {key} = {_REQUIRED[where]} only")
                continue
            if where not in _MAPPED:
                unused.append(f"[{section}] {key}")
                continue
            name, kind = _MAPPED[where]
            try:
                if kind == "float":
                    settings[name] = parser.getfloat(section, key)
                elif kind == "int":
                    settings[name] = parser.getint(section, key)
                else:
                    settings[name] = parser.getboolean(section, key)
            except ValueError:
                raise ValueError(f"{path}: [{section}] {key} = {raw!r} is not a valid {kind}") from None
    if unused:
        warnings.warn(f"{path}: these SNN Toolbox settings are not used by ttfs-native: "
                      + ", ".join(unused), ConfigWarning, stacklevel=2)
    return settings
