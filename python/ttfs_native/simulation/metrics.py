"""Operation counts with units, sparsity, parameters and an energy estimate
(docs/METRICS.md), in NeuroBench's terms where it has them.

* **AC** (accumulate): one addition of a weight to a membrane, triggered by a
  spike. The SNN's synaptic operations (``synops_t``) are ACs: a neuron's
  spike costs its fan-out once (SEMANTICS.md, "Counting operations").
  NeuroBench: *effective ACs*.
* **MAC** (multiply-accumulate): the SNN's input layer is not spiking; it
  delivers the analog sample as a constant current, so the first weighted
  layer multiplies each non-zero input by its weights once per sample.
  NeuroBench: *effective MACs* (zero inputs cost nothing).
* **ANN MACs**: one forward pass of the ANN as trained (before average
  pooling was folded), every connection once.
* **Activation sparsity** (NeuroBench): the fraction of zero entries among all
  (neuron, step) activations of the spiking layers: ``1 - spikes / (neurons * steps)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Energy per operation, 45 nm CMOS: M. Horowitz, "Computing's energy problem (and
# what we can do about it)", ISSCC 2014, table of arithmetic energies. A MAC is a
# multiplication plus an addition. Memory access, the larger cost in practice, is
# not included.
ENERGY_TABLES = {
    "45nm-fp32": {"ac": 0.9e-12, "mac": 3.7e-12 + 0.9e-12,
                  "what": "32-bit float: add 0.9 pJ, multiply 3.7 pJ"},
    "45nm-int32": {"ac": 0.1e-12, "mac": 3.1e-12 + 0.1e-12,
                   "what": "32-bit integer: add 0.1 pJ, multiply 3.1 pJ"},
    "45nm-int8": {"ac": 0.03e-12, "mac": 0.2e-12 + 0.03e-12,
                  "what": "8-bit integer: add 0.03 pJ, multiply 0.2 pJ"},
}
ENERGY_SOURCE = "M. Horowitz, ISSCC 2014 (45 nm); arithmetic only, memory access not included"


def layer_accumulates(first_spike_times: dict, fanouts: dict) -> dict:
    """{spiking layer: (N,) ACs per sample}: the fan-outs of the neurons that fired."""
    out = {}
    for name, times in first_spike_times.items():
        if name in fanouts:
            fired = np.asarray(times).reshape(times.shape[0], -1) > 0
            out[name] = fired.astype(np.float64) @ np.asarray(fanouts[name], np.float64).reshape(-1)
    return out


def input_macs(x: np.ndarray, fanouts: dict) -> np.ndarray:
    """(N,) MACs per sample of the analog input: non-zero inputs times their fan-out."""
    fan = np.asarray(fanouts["input"], np.float64).reshape(-1)
    return (x.reshape(x.shape[0], -1) != 0).astype(np.float64) @ fan


@dataclass(frozen=True)
class LayerMetrics:
    name: str
    neurons: int
    spikes_per_neuron: float
    activation_sparsity: float
    acs: float | None            # per sample; None when spike times were not recorded on the host


@dataclass(frozen=True)
class Metrics:
    """Per-sample means over a run (see the module's docstring for the definitions)."""

    acs: float                   # SNN accumulates per sample (= synaptic operations)
    macs: float | None           # SNN multiply-accumulates per sample (analog input); None if unknown
    ann_macs: float              # ANN multiply-accumulates per forward pass (as trained)
    spikes_per_neuron: float
    activation_sparsity: float
    parameters: int
    parameter_bytes: int         # float32
    steps: int
    layers: tuple

    def energy(self, table: str = "45nm-fp32") -> dict:
        """Joules per sample: ``snn`` (ACs and MACs), ``ann`` (its MACs) and ``ratio``."""
        if table not in ENERGY_TABLES:
            raise ValueError(f"energy table must be one of {sorted(ENERGY_TABLES)}, got {table!r}")
        e = ENERGY_TABLES[table]
        snn = self.acs * e["ac"] + (self.macs or 0.0) * e["mac"]
        ann = self.ann_macs * e["mac"]
        layers = {m.name: m.acs * e["ac"] for m in self.layers if m.acs is not None}
        return {"table": table, "snn": snn, "ann": ann, "ratio": snn / ann if ann else float("nan"),
                "layers": layers}

    def table(self, energy: str | None = None) -> str:
        """The metrics as text, with units (and the energy estimate with ``energy``)."""
        macs = "n/a (input on the GPU)" if self.macs is None else f"{self.macs:,.0f} MAC"
        lines = [
            f"synaptic operations per sample  {self.acs:,.0f} AC + {macs}",
            f"ANN operations per sample       {self.ann_macs:,.0f} MAC "
            f"(SNN: {self.acs / self.ann_macs if self.ann_macs else float('nan'):.3f} AC per ANN MAC)",
            f"spikes per neuron               {self.spikes_per_neuron:.4f}",
            f"activation sparsity             {self.activation_sparsity:.4f} (zero (neuron, step) "
            f"entries over {self.steps} steps)",
            f"parameters                      {self.parameters:,} ({self.parameter_bytes / 1024:,.1f} KiB float32)",
        ]
        if self.layers:
            width = max(len(m.name) for m in self.layers)
            lines.append(f"{'layer':<{width}}  {'neurons':>9}  {'spikes/neuron':>13}  {'sparsity':>8}  "
                         f"{'AC/sample':>12}")
            for m in self.layers:
                acs = "-" if m.acs is None else f"{m.acs:,.0f}"
                lines.append(f"{m.name:<{width}}  {m.neurons:>9,}  {m.spikes_per_neuron:>13.4f}  "
                             f"{m.activation_sparsity:>8.4f}  {acs:>12}")
        if energy:
            e = self.energy(energy)
            lines.append(f"energy per sample ({energy}: {ENERGY_TABLES[energy]['what']}): "
                         f"SNN {e['snn'] * 1e9:,.3f} nJ, ANN {e['ann'] * 1e9:,.3f} nJ "
                         f"(SNN/ANN {e['ratio']:.3f})")
            lines.append(f"  source: {ENERGY_SOURCE}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("acs", "macs", "ann_macs", "spikes_per_neuron",
                                           "activation_sparsity", "parameters", "parameter_bytes", "steps")}
        d["layers"] = [m.__dict__.copy() for m in self.layers]
        return d
