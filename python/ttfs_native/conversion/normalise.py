"""Data-based weight normalisation, as SNN Toolbox's ``normalize_parameters``.

A converted neuron encodes its activation by the time of its first spike
(about ``v_thresh / a`` steps), so each layer's activations must sit in a
known range: activations far above 1 all fire on the first step (their order
is lost), activations far below ``v_thresh / steps`` never fire. The toolbox
rescales every weighted layer so that a high percentile of its activations on
a calibration set becomes 1:

* ``lambda_l`` = the ``percentile``-th percentile of the *non-zero*
  activations of weighted layer ``l`` on the calibration set (the ANN run with
  the original weights); the input has ``lambda = 1``.
* ``kernel_l *= lambda_in / lambda_l`` and ``bias_l /= lambda_l``, where
  ``lambda_in`` is the scale of the layer's input.

Then the normalised network computes ``a_l / lambda_l`` in every layer and,
because ReLU is positively homogeneous, the same argmax as the ANN.

Choices (the toolbox's unless stated):

* Layers without weights (pooling, Flatten, Reshape, ZeroPadding2D) pass their
  input's scale through unchanged.
* Concatenate of branches with different scales: every branch keeps its own
  normalisation; the consuming weighted layer rescales the kernel slice that
  reads each branch by that branch's ``lambda`` (the toolbox does this for
  channel concatenation). Here the scale is tracked per element, so this also
  covers a Dense layer after Flatten and concatenation along any axis, as long
  as each consuming layer sees one scale per input channel (a convolution or
  pooling after a *spatial* concatenation of differently scaled branches is
  refused with an error).
* Add (SEMANTICS.md "Add"): its branches share one scale at the merge,
  the Add's ``lambda`` (the percentile of its own activations, or its clip).
  A weighted branch is rescaled like any weighted layer with that ``lambda``
  as its own; an identity inbound of scale ``lambda_in`` gets the factor
  ``lambda_in / lambda_add`` in the Add's ``scales``.
* Softmax output layer: ``lambda = 1`` (only the inbound scale is undone), as
  the toolbox does, because a small percentile of softmax probabilities would
  blow up the output's weights and biases. Convert it to ReLU first
  (``softmax_to_relu``) to normalise it like the other layers.
* ReLU output layer: normalised like every hidden layer (toolbox behaviour
  after its ``softmax_to_relu`` option).
* Linear output layer: percentile of its *positive* activations (the SNN
  only represents the positive part; the toolbox would take all non-zero
  values, which at high percentiles is the same upper tail).
* A layer with no positive activation on the calibration set raises an
  error (the toolbox would fail on an empty percentile).

Normalising an already normalised model again gives the same network as
normalising the original ANN with the new percentile (up to float32
rounding), because the activations of a normalised model are the original
ones divided by ``lambda``. So percentile searches may start from either.
(A calibrated model's per-layer threshold scales are undone first; see
calibrate.py.)
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..model import Model, ModelError, check_input
from ..model.layers import concat_axis
from ..model.transforms import ann_view

DEFAULT_PERCENTILE = 99.9


def normalise(model: Model, x_calibration, percentile: float = DEFAULT_PERCENTILE,
              batch_size: int = 256, per_channel: bool = False, stats=None,
              range_scales: dict | None = None) -> Model:
    """Return a new, normalised copy of ``model`` (the ANN with converted weights).

    ``x_calibration``: (N, *input_shape) channels-last samples, e.g. part of the
    training set. ``percentile`` in (0, 100]: 100 is the maximum activation,
    99.9 the toolbox's default. ``per_channel``: a ``lambda`` per output
    channel of every hidden Conv2D and Dense layer instead of one per layer
    (not the toolbox's; the output layer keeps one, so the argmax is kept).
    ``stats``: :class:`ActivationStats` of ``model`` on ``x_calibration``
    computed earlier (searches normalise the same activations many times).
    ``range_scales``: ``{layer: r}`` multiplies those layers' ``lambda`` by
    ``r > 0`` (the activation that becomes 1 is ``r`` times the percentile; an
    Add's factor also moves its branches; the ttfs-window conversion sizes
    windows this way, conversion/window.py).
    The returned model's ``metadata["normalisation"]`` records the percentile,
    the number of calibration samples and the scale factor(s) of every
    weighted layer (relative to ``model``).
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a ttfs_native Model, got {type(model).__name__}")
    percentile = check_percentile(percentile)
    model = ann_view(model)   # a calibrated model's layer threshold scales are not part of its ANN
    if stats is None:
        stats = ActivationStats(model, x_calibration, batch_size)
    elif stats.model is not model:
        raise ValueError("stats were computed for another model")
    factors = _scaled(model, stats.factors(percentile, per_channel), range_scales)
    weights, add_scales = _rescaled_weights(model, factors)
    layers = [s.to_json() for s in model.layers]
    for d in layers:
        if d.get("max_value") is not None:
            d["max_value"] = d["max_value"] / factors[d["name"]]   # the clip in the layer's new scale
        if d["name"] in add_scales:
            d["scales"] = add_scales[d["name"]]
    metadata = dict(model.metadata)
    metadata.pop("calibration", None)
    record = {"method": "percentile of non-zero activations (SNN Toolbox normalize_parameters)"
                        + (", per output channel of hidden layers" if per_channel else ""),
              "percentile": percentile,
              "calibration_samples": stats.num_samples,
              # the inputs' range: a later input far outside it gets a warning (wrong scaling, e.g. 0-255)
              "input_range": list(stats.input_range),
              "scale_factors": {name: v.tolist() if isinstance(v, np.ndarray) else float(v)
                                for name, v in factors.items()}}
    if range_scales:
        record["range_scales"] = {name: float(r) for name, r in range_scales.items()}
    if "normalisation" in metadata:
        record["previous"] = metadata["normalisation"]
    metadata["normalisation"] = record
    return Model(model.input_shape, layers, weights, metadata)


def check_percentile(percentile) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real):
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}")
    value = float(percentile)
    if not math.isfinite(value) or not 0 < value <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile!r}")
    return value


def scale_factors(model: Model, x_calibration, percentile: float = DEFAULT_PERCENTILE,
                  batch_size: int = 256, per_channel: bool = False) -> dict:
    """``{weighted layer name: lambda}`` for ``model`` on the calibration set
    (``lambda`` an array over output channels where ``per_channel`` applies)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a ttfs_native Model, got {type(model).__name__}")
    return ActivationStats(model, x_calibration, batch_size).factors(check_percentile(percentile), per_channel)


class ActivationStats:
    """The activations of every weighted layer of ``model`` on a calibration
    set, computed once (one ANN pass); :meth:`factors` reads any percentile
    of them."""

    def __init__(self, model: Model, x_calibration, batch_size: int = 256):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a ttfs_native Model, got {type(model).__name__}")
        x = check_input(model, x_calibration, "calibration input", allow_empty=False)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.num_samples = int(x.shape[0])
        self.input_range = (float(x.min()), float(x.max()))
        # weighted layers and Adds; residual branches have no activation of their own (their Add's)
        self._normalised = [s for s in model.layers if (s.is_weighted and not s.is_branch) or s.is_add]
        names = [s.name for s in self._normalised if s.activation != "softmax"]
        parts: dict = {n: [] for n in names}
        for lo in range(0, x.shape[0], int(batch_size)):
            acts = model.ann_forward(x[lo:lo + batch_size], return_all=True)
            for n in names:
                a = acts[n]
                parts[n].append(a.reshape(-1, a.shape[-1]))
        # (samples * positions, channels) per layer; None for a softmax output
        self._acts = {s.name: np.concatenate(parts[s.name]) if s.name in parts else None
                      for s in self._normalised}
        self._cache: dict = {}

    def factors(self, percentile: float, per_channel: bool = False) -> dict:
        """``{weighted layer name: lambda}``: the ``percentile`` of each layer's
        positive activations (per output channel of hidden Conv2D/Dense layers
        with ``per_channel``; a channel that is never positive takes its layer's).
        Residual Adds are normalised like layers; the branches feeding an Add take
        its lambda. A network with an Add has one lambda per layer (an identity
        shortcut carries one scale)."""
        key = (check_percentile(percentile), bool(per_channel))
        if key in self._cache:
            return dict(self._cache[key])
        per_channel = per_channel and not any(s.is_add for s in self.model.layers)
        out = {}
        for spec in self._normalised:
            a = self._acts[spec.name]
            if a is None:      # softmax output: the toolbox keeps it at 1
                out[spec.name] = 1.0
                continue
            if spec.max_value is not None:
                # A clipped ReLU is normalised at its clip: the clip then lies at 1, where the
                # time code saturates (a neuron whose current reaches the threshold in one
                # step fires at the first step, SEMANTICS.md "Layers").
                out[spec.name] = spec.max_value
                continue
            positive = a[a > 0]
            if positive.size == 0:
                raise ValueError(f"layer '{spec.name}' has no positive activation on the {self.num_samples} "
                                 "calibration samples; use a larger or more representative calibration set")
            layer = float(np.percentile(positive.astype(np.float64), key[0]))
            if per_channel and spec.type in ("Conv2D", "Dense") and spec is not self.model.output_layer:
                lam = np.full(a.shape[1], layer)
                for c in range(a.shape[1]):
                    pc = a[:, c][a[:, c] > 0]
                    if pc.size:
                        lam[c] = np.percentile(pc.astype(np.float64), key[0])
                out[spec.name] = lam
            else:
                out[spec.name] = layer
        _branches_follow_adds(self.model, out)
        self._cache[key] = out
        return dict(out)


# ------------------------------------------------------------ applying
def _scaled(model: Model, factors: dict, range_scales) -> dict:
    """``factors`` with the lambdas named in ``range_scales`` multiplied by their factor."""
    if not range_scales:
        return factors
    for name, r in range_scales.items():
        if name not in factors or model.layer(name).is_branch:
            raise ValueError(f"range_scales: '{name}' is not a normalised layer of the model "
                             f"(known: {', '.join(n for n in factors if not model.layer(n).is_branch)})")
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r) or r <= 0:
            raise ValueError(f"range_scales['{name}'] must be a positive number, got {r!r}")
        factors[name] = factors[name] * float(r)
    _branches_follow_adds(model, factors)
    return factors


def _branches_follow_adds(model: Model, factors: dict) -> None:
    """A residual branch lives in its Add's scale: its lambda becomes the Add's."""
    for spec in model.layers:
        if spec.is_branch:
            factors[spec.name] = factors[spec.merge]


def _rescaled_weights(model: Model, factors: dict) -> tuple:
    """New weights with ``kernel *= lambda_in / lambda_out``, ``bias /= lambda_out``,
    and each Add's new ``scales`` (an identity inbound: ``scale * lambda_in / lambda_add``;
    a weighted branch's kernel already undoes its input's scale)."""
    scales = {"input": 1.0}  # scale of each layer's output: a float, or an array of its shape
    weights, add_scales = {}, {}
    for spec in model.layers:
        ins = [scales[n] for n in spec.inbound]
        if spec.is_add:
            lam = factors[spec.name]
            add_scales[spec.name] = [
                s if n != "input" and model.layer(n).is_branch else s * _identity_scale(spec, n, scale) / lam
                for n, s, scale in zip(spec.inbound, spec.scales, ins)]
            scales[spec.name] = lam
        elif spec.is_weighted:
            lam = factors[spec.name]     # a float, or one per output channel (last axis)
            w = model.weights[spec.name]
            kernel = w["kernel"].astype(np.float64) * _kernel_input_scale(spec, ins[0]) / lam
            bias = None if w["bias"] is None else (w["bias"].astype(np.float64) / lam).astype(np.float32)
            weights[spec.name] = {"kernel": kernel.astype(np.float32), "bias": bias}
            scales[spec.name] = np.broadcast_to(lam, spec.output_shape).copy() \
                if isinstance(lam, np.ndarray) else lam
        else:
            scales[spec.name] = _pass_scale(spec, ins)
    return weights, add_scales


def _identity_scale(spec, inbound: str, scale) -> float:
    """The one scale of an Add's identity inbound."""
    if not isinstance(scale, np.ndarray):
        return float(scale)
    flat = np.unique(scale)
    if flat.size != 1:
        raise ModelError(f"layer '{spec.name}': its inbound '{inbound}' concatenates branches with "
                         "different normalisation scales, which an identity shortcut cannot undo")
    return float(flat[0])


def _kernel_input_scale(spec, scale):
    """Factor to multiply the kernel by so that it undoes the input's scale."""
    if not isinstance(scale, np.ndarray):
        return scale
    per_channel = _per_channel(spec, scale)
    if spec.type == "Dense":
        return per_channel[:, None]
    if spec.type == "Conv2D":
        return per_channel[None, None, :, None]
    return per_channel[None, None, :, None]  # DepthwiseConv2D (kh, kw, in, depth_multiplier)


def _per_channel(spec, scale: np.ndarray) -> np.ndarray:
    """The scale of each input channel, if it does not vary over the other axes."""
    flat = scale.reshape(-1, scale.shape[-1])
    if not np.all(flat == flat[:1]):
        raise ModelError(f"layer '{spec.name}': its input concatenates branches with different "
                         "normalisation scales along a non-channel axis, which a "
                         f"{spec.type} layer cannot undo; concatenate along the channel axis")
    return flat[0]


def _pass_scale(spec, ins: list):
    """Scale of a layer without weights: its input's (the branches' for Concatenate)."""
    if spec.type == "Concatenate":
        if all(not isinstance(s, np.ndarray) for s in ins) and len(set(ins)) == 1:
            return ins[0]
        full = [np.broadcast_to(np.asarray(s, np.float64), shape)
                for s, shape in zip(ins, spec.input_shapes)]
        return np.concatenate(full, axis=concat_axis(spec))
    scale = ins[0]
    if not isinstance(scale, np.ndarray):
        return scale
    if spec.type in ("Flatten", "Reshape"):
        return scale.reshape(spec.output_shape)
    per_channel = _per_channel(spec, scale)   # pooling and zero padding work per channel
    return np.broadcast_to(per_channel, spec.output_shape).copy()
