"""A Ray Data predictor: a callable class for ``Dataset.map_batches``."""
from __future__ import annotations

import numpy as np

from ..model import Model, load_model
from ..simulation import Simulator


def _gpus_of_this_worker() -> int:
    """GPUs Ray assigned to the calling worker (0 outside Ray or without Ray)."""
    try:
        import ray
    except ImportError:
        return 0
    return len(ray.get_gpu_ids()) if ray.is_initialized() else 0


class SNNPredictor:
    """Simulate the batches of a Ray Dataset, one Simulator per actor::

        ds.map_batches(SNNPredictor, fn_constructor_kwargs=dict(model_dir="model/", duration=64),
                       concurrency=4, batch_size=256)      # add num_gpus=1 for a GPU per actor

    ``input_column`` holds the samples, channels-last (N, *input_shape); a
    column of 2-D images for a one-channel model gets its channel axis added.
    Each batch comes back with its columns and: ``prediction`` (int64, -1
    where the output never fired), ``first_output_spike_time`` (float32, time
    of the output layer's first spike, NaN where it never fired), ``synops``
    (float64, the sample's synaptic operations over the run) and, for each of
    ``spike_time_layers``, ``first_spike_time_<layer>`` (the layer's first-spike
    times, 0 where a neuron never fired).

    ``index_column``: a column with each sample's index in the whole data set.
    A softmax output layer's random stream is keyed by that index (SEMANTICS.md);
    without this column it is keyed by the position in the batch, so such a
    model's results then depend on how the rows were batched. Other models
    give the same results either way.

    ``simulator_options`` as :class:`ttfs_native.Simulator`; the backend
    defaults to ``"cuda"`` on an actor given GPUs (``num_gpus=1``), else ``"cpu"``.
    """

    def __init__(self, model_dir, input_column: str = "image", spike_time_layers=(),
                 index_column: str | None = None, **simulator_options):
        model = model_dir if isinstance(model_dir, Model) else load_model(model_dir)
        self.input_column, self.index_column = input_column, index_column
        self.spike_time_layers = tuple(spike_time_layers)
        if "backend" not in simulator_options:
            simulator_options["backend"] = "cuda" if _gpus_of_this_worker() else "cpu"
        simulator_options.setdefault("record_spike_times", bool(self.spike_time_layers))
        self.simulator = Simulator(model, **simulator_options)
        spiking = [s.name for s in self.simulator.model.spiking_layers]
        unknown = [name for name in self.spike_time_layers if name not in spiking]
        if unknown:
            raise ValueError(f"spike_time_layers: no spiking layer named {', '.join(map(repr, unknown))}; "
                             f"the model's are {', '.join(spiking)}")
        if self.spike_time_layers and not self.simulator.record_spike_times:
            raise ValueError("spike_time_layers needs record_spike_times=True")

    def _input(self, batch: dict) -> np.ndarray:
        if self.input_column not in batch:
            raise ValueError(f"the batch has no column {self.input_column!r} (it has "
                             f"{', '.join(map(repr, batch))}); set input_column")
        x = batch[self.input_column]
        if isinstance(x, np.ndarray) and x.dtype == object:  # a column of separately stored arrays
            shapes = {np.shape(v) for v in x}
            if len(shapes) > 1:
                raise ValueError(f"column {self.input_column!r} holds arrays of different shapes "
                                 f"{sorted(shapes)}; the model takes {self.simulator.model.input_shape}")
            x = np.stack(list(x)) if len(x) else x
        x = np.asarray(x)
        shape = self.simulator.model.input_shape
        if shape[-1] == 1 and x.shape[1:] == shape[:-1]:
            x = x[..., None]  # grayscale images as Ray reads them: (N, H, W)
        return x

    def _runs(self, batch: dict, n: int):
        """(lo, hi, first sample index) of the batch's runs of consecutive indices."""
        if self.index_column is None:
            return [(0, n, 0)]
        if self.index_column not in batch:
            raise ValueError(f"the batch has no index column {self.index_column!r}")
        idx = np.asarray(batch[self.index_column])
        if idx.shape != (n,) or idx.dtype.kind not in "iu" or (n and idx.min() < 0):
            raise ValueError(f"index column {self.index_column!r} must hold one non-negative integer "
                             "per sample")
        breaks = [0] + [int(i) + 1 for i in np.flatnonzero(np.diff(idx) != 1)] + [n]
        return [(lo, hi, int(idx[lo])) for lo, hi in zip(breaks[:-1], breaks[1:])]

    def __call__(self, batch: dict) -> dict:
        x = self._input(batch)
        n = x.shape[0] if x.ndim else 0
        columns = {"prediction": np.empty(n, np.int64), "first_output_spike_time": np.empty(n, np.float32),
                   "synops": np.empty(n, np.float64)}
        for layer in self.spike_time_layers:
            shape = next(s.output_shape for s in self.simulator.model.spiking_layers if s.name == layer)
            columns[f"first_spike_time_{layer}"] = np.empty((n,) + tuple(shape), np.float32)
        if n == 0:
            return {**batch, **columns}
        dt32 = self.simulator.params.dt32
        for lo, hi, first in self._runs(batch, n):
            r = self.simulator.run(x[lo:hi], sample_offset=first)
            step = r.decision_step
            columns["prediction"][lo:hi] = r.predictions
            columns["first_output_spike_time"][lo:hi] = np.where(
                step > 0, step.astype(np.float32) * dt32, np.float32(np.nan))
            columns["synops"][lo:hi] = r.synops_t.sum(axis=1)
            for layer in self.spike_time_layers:
                columns[f"first_spike_time_{layer}"][lo:hi] = r.first_spike_times[layer]
        return {**batch, **columns}
