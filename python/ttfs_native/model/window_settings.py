"""Settings of the ``ttfs-window`` coding carried by a model folder
(model.json ``"simulation": {"coding": "ttfs-window", ..., "window": {...}}``;
docs/WINDOW_SEMANTICS.md):

    "window": {"input_steps": 12, "input_range": 1.0, "signed_input": false,
               "zero_spikes": true, "steps": {"conv1": 12, "conv2": 13, "d1": 12, "d2": 12}}

* ``input_steps`` S_0: levels of the input code (the input's window is S_0 steps);
* ``input_range`` X_0: the input value of the top level S_0 (larger values saturate);
* ``signed_input``: each input element is an ON/OFF pair of neurons, so negative
  inputs are encoded too (the OFF neuron's ramps have the opposite sign);
* ``zero_spikes``: a neuron that has not fired by the end of its window fires
  there (level 0); false leaves it silent, which changes no membrane value or
  prediction (the window's slope is 1 whatever arrived) but saves the spikes;
* ``steps`` S_n: the window of every *windowed* layer (hidden weighted layers and
  average pooling; see :func:`windowed_layers`).

Only plain JSON types; validation raises ModelError naming the key.
"""
from __future__ import annotations

import math

from .layers import ModelError

WINDOW_CODING = "ttfs-window"
MAX_WINDOW_STEPS = 100_000


def windowed_layers(model) -> list:
    """Names of the layers that own a time window: every weighted layer but the
    output, every residual Add and every AveragePooling2D (MaxPooling2D and
    structural layers spike in their input's window; the output layer is read,
    it does not spike; an Add's weighted branches have no neurons)."""
    out = model.output_layer
    return [s.name for s in model.layers
            if (s.is_weighted and not s.is_branch and s is not out) or s.is_add or s.type == "AveragePooling2D"]


def _steps(where: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value or not 1 <= value <= MAX_WINDOW_STEPS:
        raise ModelError(f"'{where}' must be an integer in [1, {MAX_WINDOW_STEPS}], got {value!r}")
    return int(value)


def check_window_settings(window, model=None, where: str = "simulation.window") -> dict:
    """A validated, normalised copy of a "window" object; with ``model`` also
    checks that ``steps`` names exactly the model's windowed layers."""
    if not isinstance(window, dict):
        raise ModelError(f"'{where}' must be an object, got {type(window).__name__}")
    known = {"input_steps", "input_range", "signed_input", "zero_spikes", "steps"}
    unknown = sorted(set(window) - known)
    if unknown:
        raise ModelError(f"'{where}': unknown key(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(known))})")
    for key in ("input_steps", "input_range", "steps"):
        if key not in window:
            raise ModelError(f"'{where}' needs '{key}'")
    out = {"input_steps": _steps(f"{where}.input_steps", window["input_steps"])}
    rng = window["input_range"]
    if isinstance(rng, bool) or not isinstance(rng, (int, float)) or not math.isfinite(rng) or rng <= 0:
        raise ModelError(f"'{where}.input_range' must be a positive number, got {rng!r}")
    out["input_range"] = float(rng)
    for key, default in (("signed_input", False), ("zero_spikes", True)):
        value = window.get(key, default)
        if not isinstance(value, bool):
            raise ModelError(f"'{where}.{key}' must be true or false, got {value!r}")
        out[key] = value
    steps = window["steps"]
    if not isinstance(steps, dict):
        raise ModelError(f"'{where}.steps' must be an object {{layer name: steps}}, got {type(steps).__name__}")
    out["steps"] = {str(name): _steps(f"{where}.steps.{name}", v) for name, v in steps.items()}
    if model is not None:
        want = windowed_layers(model)
        missing = [n for n in want if n not in out["steps"]]
        extra = [n for n in out["steps"] if n not in want]
        if missing or extra:
            raise ModelError(f"'{where}.steps' must give the window of exactly the windowed layers "
                             f"{want}" + (f"; missing {missing}" if missing else "")
                             + (f"; not windowed or unknown {extra}" if extra else ""))
    return out


def total_steps(window: dict, model) -> int:
    """The step at which the output is read (the network's latency in steps):
    1 + S_0 + the windows along the longest path to the output layer."""
    from_input = {"input": 1 + window["input_steps"]}
    for spec in model.layers:
        start = max(from_input[n] for n in spec.inbound)
        own = window["steps"].get(spec.name, 0) if spec is not model.output_layer else 0
        from_input[spec.name] = start + own
    return from_input[model.output_layer.name]
