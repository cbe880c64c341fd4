"""The simulation settings a model folder carries (model.json "simulation").

A converted or calibrated model is only accurate with the settings it was
calibrated for, so the folder records them and ``simulate DIR`` /
``Simulator.for_model`` use them unless told otherwise (docs/MODEL_FORMAT.md):

    "simulation": {"coding": "ttfs-dyn-thresh", "duration": 32.0, "dt": 0.5,
                   "v_thresh": 1.5, "leak": false}

Absent (older folders, plain conversions): {} and the simulator's defaults.
Folders written before this key existed kept the calibrated settings in
``metadata["calibration"]["simulation"]``; :func:`stored_simulation` reads
them from there.
"""
from __future__ import annotations

import math

from .layers import ModelError
from .window_settings import WINDOW_CODING, check_window_settings

CODINGS = ("ttfs-dyn-thresh", "ttfs-window")
DEFAULT_CODING = "ttfs-dyn-thresh"
# keys every coding understands; a coding may add its own (the window coding does)
COMMON_KEYS = ("coding", "duration", "dt", "v_thresh", "leak")


def check_simulation(settings, where: str = "simulation") -> dict:
    """A validated copy of a "simulation" object; ModelError naming the bad key."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ModelError(f"'{where}' must be an object, got {type(settings).__name__}")
    out = dict(settings)
    coding = out.get("coding", DEFAULT_CODING)
    if coding not in CODINGS:
        raise ModelError(f"'{where}.coding' must be one of {list(CODINGS)}, got {coding!r}")
    if "coding" in out:
        out["coding"] = coding
    for key in ("duration", "dt", "v_thresh"):
        if key in out:
            v = out[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ModelError(f"'{where}.{key}' must be a positive number, got {v!r}")
            out[key] = float(v)
    if "leak" in out and not isinstance(out["leak"], bool):
        raise ModelError(f"'{where}.leak' must be true or false, got {out['leak']!r}")
    if "duration" in out and int(out["duration"] / out.get("dt", 1.0)) < 1:
        raise ModelError(f"'{where}': duration {out['duration']:g} / dt {out.get('dt', 1.0):g} "
                         "gives no time step")
    if coding == WINDOW_CODING:    # its own settings: window_settings.py (names checked by Model)
        if "window" not in out:
            raise ModelError(f"'{where}': coding '{WINDOW_CODING}' needs a 'window' object")
        out["window"] = check_window_settings(out["window"], where=f"{where}.window")
        unknown = sorted(set(out) - set(COMMON_KEYS) - {"window"})
        if unknown:
            raise ModelError(f"'{where}': unknown key(s) {', '.join(map(repr, unknown))} for coding "
                             f"{WINDOW_CODING!r} (known: {', '.join(COMMON_KEYS + ('window',))})")
    if coding == DEFAULT_CODING:   # the original coding has no other settings
        unknown = sorted(set(out) - set(COMMON_KEYS))
        if unknown:
            raise ModelError(f"'{where}': unknown key(s) {', '.join(map(repr, unknown))} for coding "
                             f"{DEFAULT_CODING!r} (known: {', '.join(COMMON_KEYS)})")
    return out


def stored_simulation(desc: dict) -> dict:
    """The settings of a model.json object: its "simulation", or those an older
    calibration recorded in ``metadata["calibration"]["simulation"]``."""
    if "simulation" in desc:
        return check_simulation(desc["simulation"])
    old = ((desc.get("metadata") or {}).get("calibration") or {}).get("simulation")
    if isinstance(old, dict):
        return check_simulation(old, "metadata.calibration.simulation")
    return {}


def describe_simulation(settings: dict) -> str:
    """One line for ``info`` and summaries."""
    if not settings:
        return "simulation: none stored (the simulator's defaults; give --duration)"
    parts = [f"coding {settings.get('coding', DEFAULT_CODING)}"]
    if "duration" in settings:
        dt = settings.get("dt", 1.0)
        parts.append(f"duration {settings['duration']:g} ({int(settings['duration'] / dt)} steps)")
    for key in ("dt", "v_thresh"):
        if key in settings:
            parts.append(f"{key} {settings[key]:g}")
    if "leak" in settings:
        parts.append(f"leak {'on' if settings['leak'] else 'off'}")
    parts += [f"{k} {settings[k]}" for k in settings if k not in COMMON_KEYS]
    return "simulation: " + ", ".join(parts)
