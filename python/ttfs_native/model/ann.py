"""The converted network read as an ANN: its class decisions."""
from __future__ import annotations

import numpy as np

from .ops import add, weighted
from .model import Model
from .transforms import ann_view


def ann_predictions(model: Model, x) -> np.ndarray:
    """The ANN's class decisions: argmax of the output layer's pre-activation.

    (With a softmax output replaced by ReLU, ReLU would turn all-negative
    outputs into a tie at class 0; the trained ANN decided by its logits.)
    Layer threshold scales of a calibrated model are undone first (ann_view).
    """
    return ann_logits(ann_view(model), x).argmax(axis=1)


def ann_logits(model: Model, x, acts: dict | None = None) -> np.ndarray:
    """(N, classes) pre-activation of ``model``'s output layer (no ann_view);
    ``acts``: its ``ann_forward(x, return_all=True)`` if already computed."""
    acts = model.ann_forward(x, return_all=True) if acts is None else acts
    out = model.output_layer
    w = model.weights.get(out.name)
    if out.is_weighted:
        logits = weighted(out, acts[out.inbound[0]], w["kernel"], w["bias"])
    elif out.is_add:
        logits = add(out, [acts[n] for n in out.inbound])
    else:
        logits = acts[out.name]
    return logits.reshape(len(logits), -1)
