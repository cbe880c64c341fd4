"""What a simulation run returns."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .metrics import LayerMetrics, Metrics


# Fields of SimulationResult: what from_raw reads, the other per-sample ones
# (arrays or dicts of arrays, first axis the sample), what from_raw derives.
_RAW = ("counts", "synops_t", "stop_step", "first_spike_times", "spike_counts", "output_membrane")
_PER_SAMPLE = ("input_macs", "layer_acs")
_DERIVED = ("predictions", "labels", "accuracy_t")


@dataclass
class SimulationResult:
    """Outputs of :meth:`Simulator.run` for N samples and T steps.

    Attributes
    ----------
    predictions : (N,) int64, argmax of the final class counts (lowest index
        on ties), -1 where the output never fired; coding ttfs-window: argmax
        of ``output_membrane`` (lowest index on ties).
    counts : (N, classes, T) int32, cumulative number of steps at which each
        output neuron's signal was non-zero.
    first_spike_times : dict layer -> (N, *layer shape) float32, time of the
        first spike in time units (t * dt), 0 where the neuron never fired
        (a :class:`DeviceArray` on the GPU with ``spike_times_on_device``).
    spike_counts : dict layer -> (N,) int64, spikes (spike-train records) per
        sample in that layer.
    synops_t : (N, T) float64, synaptic operations at each step.
    ann_ops : operations of one ANN forward pass (same convention as synops_t).
    accuracy_t : (T,) float64 accuracy after each step, when labels were given.
    stop_step : (N,) int32, the step each sample was simulated to (early stop).
    ann_macs : multiply-accumulates of one ANN forward pass (as trained).
    parameters : weights and biases of the model.
    input_macs : (N,) float64 multiply-accumulates of the analog input per
        sample, None when the input was read on the GPU.
    layer_acs : dict layer -> (N,) float64 accumulates per sample, None when
        spike times were not recorded on the host.
    output_membrane : (N, classes) float32, coding ttfs-window only (else None):
        the output layer's value y read at R_out (docs/WINDOW_SEMANTICS.md).
    Units and definitions: :meth:`metrics` (docs/METRICS.md).
    """

    predictions: np.ndarray
    counts: np.ndarray
    first_spike_times: dict
    spike_counts: dict
    synops_t: np.ndarray
    ann_ops: float
    neurons: dict
    dt: float
    backend: str
    ops_convention: str
    wall_time: float
    stop_step: np.ndarray
    labels: np.ndarray | None = None
    accuracy_t: np.ndarray | None = field(default=None)
    ann_macs: float = float("nan")
    parameters: int = 0
    input_macs: np.ndarray | None = None
    layer_acs: dict | None = None
    output_membrane: np.ndarray | None = None

    @classmethod
    def from_raw(cls, raw: dict, labels=None, **info) -> "SimulationResult":
        counts = raw["counts"]
        final = counts[:, :, -1]
        output_membrane = raw.get("output_membrane")
        if output_membrane is not None:   # ttfs-window: the read-out values decide (lowest index on ties)
            predictions = output_membrane.argmax(axis=1).astype(np.int64)
        else:
            predictions = np.where(final.max(axis=1) > 0, final.argmax(axis=1), -1).astype(np.int64)
        accuracy_t = None
        if labels is not None:
            decided = counts.max(axis=1) > 0                       # (N, T)
            pred_t = np.where(decided, counts.argmax(axis=1), -1)  # (N, T)
            accuracy_t = (pred_t == labels[:, None]).mean(axis=0)
        return cls(predictions=predictions, counts=counts,
                   first_spike_times=raw["first_spike_times"], spike_counts=raw["spike_counts"],
                   synops_t=raw["synops_t"], stop_step=raw["stop_step"], labels=labels,
                   output_membrane=output_membrane,
                   accuracy_t=accuracy_t, **info)

    @classmethod
    def concatenate(cls, parts: list, labels=None, wall_time: float | None = None) -> "SimulationResult":
        """The result of consecutive parts of an input (each run with its
        ``sample_offset``) as one: equal to the result of one run on the whole
        input. ``labels`` of all samples give ``accuracy_t``, computed from the
        whole; ``wall_time`` defaults to the parts' sum."""
        def joined(values):
            if values[0] is None:
                return None
            if isinstance(values[0], dict):
                return {name: np.concatenate([v[name] for v in values]) for name in values[0]}
            return np.concatenate(values)

        per_sample = {name: joined([getattr(p, name) for p in parts]) for name in _RAW + _PER_SAMPLE}
        raw = {name: per_sample.pop(name) for name in _RAW}
        info = {f.name: getattr(parts[0], f.name) for f in fields(cls)
                if f.name not in _PER_SAMPLE + _RAW + _DERIVED}
        info.update(per_sample, wall_time=sum(p.wall_time for p in parts) if wall_time is None else wall_time)
        return cls.from_raw(raw, labels=labels, **info)

    # ------------------------------------------------------------ summaries
    @property
    def num_samples(self) -> int:
        return int(self.counts.shape[0])

    @property
    def steps(self) -> int:
        return int(self.counts.shape[2])

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else float(np.mean(self.predictions == self.labels))

    @property
    def decision_step(self) -> np.ndarray:
        """(N,) first step at which the output fired (the latency), -1 if never."""
        fired = self.counts.max(axis=1) > 0
        return np.where(fired.any(axis=1), fired.argmax(axis=1) + 1, -1)

    @property
    def mean_latency_steps(self) -> float:
        d = self.decision_step
        return float(d[d > 0].mean()) if np.any(d > 0) else float("nan")

    @property
    def spikes_per_neuron(self) -> float:
        total = sum(int(c.sum()) for c in self.spike_counts.values())
        return total / max(1, sum(self.neurons.values()) * self.num_samples)

    @property
    def synops_per_sample(self) -> float:
        return float(self.synops_t.sum(axis=1).mean()) if self.num_samples else 0.0

    @property
    def samples_per_second(self) -> float:
        return self.num_samples / self.wall_time if self.wall_time > 0 else float("inf")

    def metrics(self) -> Metrics:
        """Operation counts with units, sparsity, parameters (per-sample means)."""
        steps_run = float(self.stop_step.astype(np.float64).sum())
        layers = []
        for name, n in self.neurons.items():
            spikes = float(self.spike_counts[name].sum())
            acs = None if self.layer_acs is None else float(self.layer_acs[name].mean())
            layers.append(LayerMetrics(name, int(n), spikes / max(1, n * self.num_samples),
                                       1.0 - spikes / max(1.0, n * steps_run), acs))
        total_spikes = sum(float(c.sum()) for c in self.spike_counts.values())
        total_neurons = sum(self.neurons.values())
        return Metrics(acs=self.synops_per_sample,
                       macs=None if self.input_macs is None else float(self.input_macs.mean()),
                       ann_macs=float(self.ann_macs), spikes_per_neuron=self.spikes_per_neuron,
                       activation_sparsity=1.0 - total_spikes / max(1.0, total_neurons * steps_run),
                       parameters=int(self.parameters), parameter_bytes=4 * int(self.parameters),
                       steps=self.steps, layers=tuple(layers))

    def summary(self, energy: str | None = None) -> str:
        """The run in words, with units; ``energy`` (a table of metrics.ENERGY_TABLES)
        adds the energy estimate."""
        lines = [f"samples {self.num_samples}, steps {self.steps} (dt {self.dt}), backend {self.backend}"]
        if self.accuracy is not None:
            lines.append(f"SNN accuracy {self.accuracy:.4f}")
        undecided = int(np.sum(self.predictions < 0))
        lines.append(f"mean first-output-spike latency {self.mean_latency_steps:.2f} steps"
                     + (f" ({undecided} undecided)" if undecided else ""))
        ratio = self.synops_per_sample / self.ann_ops if self.ann_ops else float("nan")
        lines.append(f"synaptic operations {ratio:.3f} x ANN operations ({self.ann_ops:,.0f} = 2 per MAC "
                     f"+ bias additions; {self.ops_convention} convention)")
        lines.append(self.metrics().table(energy))
        lines.append(f"wall time {self.wall_time:.3f} s, {self.samples_per_second:.1f} samples/s")
        return "\n".join(lines)

    def to_npz(self, path) -> Path:
        """Write the arrays of the CLI's result file."""
        arrays = {"predictions": self.predictions, "counts": self.counts,
                  "synops_t": self.synops_t, "stop_step": self.stop_step,
                  "ann_ops": np.float64(self.ann_ops), "ann_macs": np.float64(self.ann_macs)}
        if self.input_macs is not None:
            arrays["input_macs"] = self.input_macs
        if self.output_membrane is not None:
            arrays["output_membrane"] = self.output_membrane
        for name, acs in (self.layer_acs or {}).items():
            arrays[f"acs/{name}"] = acs
        if self.accuracy_t is not None:
            arrays["accuracy_t"] = self.accuracy_t
            arrays["labels"] = self.labels
        for name, times in self.first_spike_times.items():
            arrays[f"spike_times/{name}"] = times
        for name, c in self.spike_counts.items():
            arrays[f"spike_counts/{name}"] = c
        path = Path(path)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return path
