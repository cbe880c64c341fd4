"""PNG plots of a simulation run (needs matplotlib: ``pip install ttfs-native[plot]``).

``write_plots(result, model, x, out_dir)`` writes:

* ``accuracy_vs_step.png``: SNN accuracy after each step, with the ANN's
  accuracy as a horizontal line (only when the run had labels);
* ``spike_raster.png``: the first spike of every neuron of one sample, one
  panel per spiking layer (neuron index against time step);
* ``spike_time_vs_activation.png``: first-spike step against the ANN's
  activation of the same neuron, per spiking layer: the time-to-first-spike
  code made visible (large activations fire early, about ``v_thresh / (a dt)``
  steps in the first layer; neurons that never fired sit on the top line).

Figures are drawn on matplotlib's Agg canvas directly, so no global backend
is switched and no display is needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .model.ann import ann_predictions
from .model.transforms import ann_view

MAX_SCATTER_SAMPLES = 32
MAX_SCATTER_POINTS = 6000


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install ttfs-native[plot] "
                          "(or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def write_plots(result, model, x, out_dir, sample: int = 0) -> list:
    """Write the PNGs for ``result`` (from simulating ``model`` on ``x``) into ``out_dir``.

    ``sample``: index (into ``x``) of the sample shown in the raster.
    Returns the list of written paths.
    """
    Figure, Canvas = _matplotlib()

    x = np.asarray(x)
    if len(x) != result.num_samples:
        raise ValueError(f"x has {len(x)} samples but the result has {result.num_samples}")
    if not 0 <= sample < len(x):
        raise ValueError(f"sample must lie in [0, {len(x)}), got {sample}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        path = out_dir / name
        Canvas(fig)
        fig.savefig(path, dpi=110)
        written.append(path)

    if result.labels is not None and result.accuracy_t is not None:
        ann_accuracy = float(np.mean(ann_predictions(model, x) == result.labels))
        save(_accuracy_figure(Figure, result, ann_accuracy), "accuracy_vs_step.png")
    save(_raster_figure(Figure, result, model, sample), "spike_raster.png")
    activations = ann_view(model).ann_forward(x[:MAX_SCATTER_SAMPLES], return_all=True)
    save(_code_figure(Figure, result, model, activations), "spike_time_vs_activation.png")
    return written


def _accuracy_figure(Figure, result, ann_accuracy):
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(1, result.steps + 1)
    ax.plot(steps, result.accuracy_t, color="C0", lw=2, label=f"SNN (final {result.accuracy_t[-1]:.3f})")
    ax.axhline(ann_accuracy, color="C3", ls="--", lw=1.5, label=f"ANN ({ann_accuracy:.3f})")
    ax.set_xlabel(f"time step (dt = {result.dt:g})")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, result.steps + 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"Accuracy versus time ({result.num_samples} samples)")
    return fig


def _spiking_layers(result, model):
    # ttfs-window: the output layer does not fire, its membrane is read (WINDOW_SEMANTICS.md)
    read = model.output_layer.name if getattr(result, "output_membrane", None) is not None else None
    return [s for s in model.spiking_layers if s.name in result.first_spike_times and s.name != read]


def _raster_figure(Figure, result, model, sample):
    from matplotlib.ticker import MaxNLocator
    layers = _spiking_layers(result, model)
    fig = Figure(figsize=(7.0, 1.2 + 1.5 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, sharex=True, squeeze=False)[:, 0]
    for ax, spec in zip(axes, layers):
        times = np.asarray(result.first_spike_times[spec.name])[sample].reshape(-1) / result.dt
        fired = np.flatnonzero(times > 0)
        ax.scatter(times[fired], fired, s=6 if spec.size > 200 else 12, marker="|" if spec.size > 50 else "o",
                   color="C0", linewidths=1)
        ax.set_ylim(-0.5, spec.size - 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.set_ylabel("neuron index")
        ax.set_title(f"{spec.name} ({spec.type}, {len(fired)}/{spec.size} fired)", fontsize=9, loc="left")
        ax.grid(alpha=0.25)
    axes[-1].set_xlim(0, result.steps + 1)
    axes[-1].set_xlabel(f"first-spike time step (dt = {result.dt:g})")
    pred = int(result.predictions[sample])
    title = f"First spikes of sample {sample}: predicted {pred if pred >= 0 else 'nothing'}"
    if result.labels is not None:
        title += f", label {int(result.labels[sample])}"
    fig.suptitle(title)
    return fig


def _code_figure(Figure, result, model, activations):
    layers = _spiking_layers(result, model)
    cols = min(3, len(layers))
    rows = -(-len(layers) // cols)
    fig = Figure(figsize=(4.0 * cols, 3.3 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    n = min(len(next(iter(activations.values()))), result.num_samples)
    never = result.steps + 2  # where neurons that never fired are drawn
    rng = np.random.default_rng(0)
    for ax, spec in zip(axes, layers):
        act = np.asarray(activations[spec.name][:n], np.float64).reshape(-1)
        times = np.asarray(result.first_spike_times[spec.name])[:n].reshape(-1) / result.dt
        keep = (act > 0) | (times > 0)       # silent neurons with zero activation say nothing
        if keep.sum() > MAX_SCATTER_POINTS:
            idx = rng.choice(np.flatnonzero(keep), MAX_SCATTER_POINTS, replace=False)
            keep = np.zeros_like(keep)
            keep[idx] = True
        fired = keep & (times > 0)
        silent = keep & (times == 0)
        ax.scatter(act[fired], times[fired], s=5, alpha=0.35, color="C0", label="fired", rasterized=True)
        if silent.any():
            ax.scatter(act[silent], np.full(silent.sum(), never), s=8, marker="x", alpha=0.5, color="C3",
                       label="never fired")
        ax.axhline(result.steps, color="0.5", lw=0.8, ls=":")
        ax.set_ylim(0, never + 2)
        ax.set_xlim(left=min(0.0, act[keep].min() if keep.any() else 0.0) - 0.02)
        ax.set_title(f"{spec.name} ({spec.type})", fontsize=9, loc="left")
        ax.set_xlabel("ANN activation")
        ax.set_ylabel("first-spike step")
        ax.grid(alpha=0.25)
        ax.legend(loc="upper right", fontsize=7, markerscale=1.5)
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle(f"Time-to-first-spike code: spike step versus ANN activation ({n} samples)")
    return fig
