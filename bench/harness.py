"""The benchmark harness: configurations, peers, measurements, table and JSON.

Everything runs in one process on the same inputs. Per configuration
(network, device, batch size, steps) it measures:

* ``ttfs-cpu`` / ``ttfs-cuda``: our backends through ``Simulator.run``
  (host input in, host results out: the user's view); ``ttfs-cuda-layer``: the
  CUDA backend with the layer-major time loop (cuda_schedule="layer");
* ``torch-loop``: the literal time-stepped PyTorch implementation
  (bench/torch_loop.py) on the same device, verified against our result;
* ``reference``: the numpy reference backend (cpu configurations only), on a
  small subset, scaled per sample;
* ``ann-torch`` (or ``ann-numpy`` without torch): the converted ANN's forward
  pass, the denominator of "SNN time / ANN time".
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

import ttfs_native as tn
from ttfs_native.model import connectivity
from ttfs_native.simulation import EngineOptions

from . import measure, networks
from . import torch_loop as tl

# The reference configurations: (net, batch, steps, note).
REFERENCE = [
    ("vgg", 256, 100, "reference: VGG-style batch 256, 100 steps"),
    ("lenet", 1, 64, "reference: LeNet-style batch 1, 64 steps, no early stop"),
    ("lenet", 256, 64, "reference: LeNet-style batch 256, 64 steps"),
    ("mobilenet", 256, 100, "MobileNet-style (depthwise), batch 256, 100 steps"),
]
CPU_EXTRA = [("lenet", 16, 50, "CPU target: >= 20x the PyTorch loop"),
             ("lenet_wide", 16, 50, "CPU target: >= 20x the PyTorch loop (SNN Toolbox's LeNet)")]
QUICK = [
    ("lenet", 1, 32, "quick"),
    ("lenet", 16, 32, "quick"),
    ("mobilenet", 8, 32, "quick"),
    ("vgg", 2, 20, "quick"),
]
DEFAULT_STEPS = {"lenet": 64, "lenet_wide": 50, "vgg": 100, "vgg_max": 100, "mobilenet": 100, "resnet": 64}
QUICK_STEPS = {"lenet": 32, "lenet_wide": 32, "vgg": 20, "vgg_max": 20, "mobilenet": 32, "resnet": 32}
DEFAULT_BATCH, QUICK_BATCH = 256, 4

# Samples the slow peers simulate on the CPU (scaled per sample to the batch).
TORCH_CPU_SAMPLES = {"lenet": 64, "lenet_wide": 32, "mobilenet": 16, "vgg": 4, "vgg_max": 4, "resnet": 16}
TORCH_CPU_SAMPLES_QUICK = {"lenet": 16, "lenet_wide": 8, "mobilenet": 4, "vgg": 1, "vgg_max": 1}
REFERENCE_SAMPLES = {"lenet": 2, "lenet_wide": 1, "mobilenet": 1, "vgg": 1, "vgg_max": 1}

# Verification thresholds for a peer to count as computing the same thing.
MIN_SPIKE_TIME_AGREEMENT = 0.99


@dataclass
class Config:
    net: str
    device: str
    batch: int
    steps: int
    early_stop: bool = False
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.net} {self.device} b{self.batch} T{self.steps}" + (" es" if self.early_stop else "")


@dataclass
class Options:
    devices: tuple = ("cpu",)
    nets: tuple | None = None
    batches: tuple | None = None
    steps: tuple | None = None
    threads: int | None = None
    cuda_schedules: tuple = ("step", "layer")  # ttfs-cuda rows: EngineOptions.cuda_schedule values
    quick: bool = False
    early_stop: bool = False
    use_torch: bool = True
    use_reference: bool = True
    torch_samples: int | None = None      # cap on the torch loop's samples (None: per-net default)
    reference_samples: int | None = None
    torch_record: bool = False            # time the torch loop recording spike times etc. too
    thread_probe: bool = True             # CPU torch peers: use the faster of --threads and 1
    json_path: str | None = None
    save_models: str | None = None
    save_only: bool = False
    verbose: bool = True


# ------------------------------------------------------------------ configs
def configurations(opt: Options) -> list:
    """The configurations to run, per device."""
    out = []
    for device in opt.devices:
        if opt.batches or opt.steps:
            nets = opt.nets or ("lenet", "vgg", "mobilenet")
            steps_of = QUICK_STEPS if opt.quick else DEFAULT_STEPS
            batches = opt.batches or ((QUICK_BATCH,) if opt.quick else (DEFAULT_BATCH,))
            for net in nets:
                for b in batches:
                    for s in (opt.steps or (steps_of[net],)):
                        out.append(Config(net, device, int(b), int(s), opt.early_stop, "custom"))
            continue
        table = QUICK if opt.quick else REFERENCE + (CPU_EXTRA if device == "cpu" else [])
        chosen = [c for c in table if opt.nets is None or c[0] in opt.nets]
        for net in opt.nets or ():
            if not any(c[0] == net for c in table):   # e.g. vgg_max: one default configuration
                chosen.append((net, 2 if opt.quick else DEFAULT_BATCH,
                               (QUICK_STEPS if opt.quick else DEFAULT_STEPS)[net], "extra network"))
        out += [Config(n, device, b, s, opt.early_stop, note) for n, b, s, note in chosen]
    return out


# ------------------------------------------------------------------ harness
class Harness:
    def __init__(self, opt: Options):
        self.opt = opt
        # threads: --threads, else OMP_NUM_THREADS or the CPUs (not OpenMP's current
        # default, which the torch peers' set_num_threads changes)
        self.build_info = tn.build_info()
        self.threads = opt.threads or self.build_info["threads"] or os.cpu_count()
        self.torch = None
        self.torch_reason = "disabled (--no-torch)"
        if opt.use_torch:
            ok, why = tl.available()
            if ok:
                self.torch = tl.torch
                self.torch.set_num_threads(self.threads)
                self.torch_reason = None
            else:
                self.torch_reason = why
        self.cuda_ours = tn.build_info()["cuda_available"]
        self.cuda_torch = self.torch is not None and self.torch.cuda.is_available()
        self._models = {}
        self._ours_results = {}
        self.messages = []
        # timing budgets (seconds)
        if opt.quick:
            self.budget = dict(min_repeats=2, min_time=0.1, max_time=2.0)
            self.b1_budget = dict(min_repeats=3, min_time=0.1, max_time=1.0)
        else:
            self.budget = dict(min_repeats=3, min_time=1.0, max_time=20.0)
            self.b1_budget = dict(min_repeats=5, min_time=0.5, max_time=10.0)

    def say(self, msg: str):
        self.messages.append(msg)
        if self.opt.verbose:
            print(msg, flush=True)

    # ---------------------------------------------------------- networks
    def model(self, net: str, n: int):
        """(model, inputs) of ``net`` with at least ``n`` benchmark inputs (cached)."""
        if net not in self._models or self._models[net][1].shape[0] < n:
            t0 = time.perf_counter()
            x = networks.inputs(net, max(n, 256))
            cached = self._models.get(net)
            model = cached[0] if cached else networks.build(net, x)
            self._models[net] = (model, x)
            if not cached:
                self.say(f"  built {net}: {sum(s.size for s in model.spiking_layers)} spiking neurons, "
                         f"{len(model.layers)} layers ({time.perf_counter() - t0:.1f} s)")
        return self._models[net]

    def ann_predictions(self, net: str) -> np.ndarray:
        """argmax of the ANN on the first 64 benchmark inputs (numpy forward pass, cached)."""
        key = ("ann_pred", net)
        if key not in self._models:
            model, x = self.model(net, 256)
            self._models[key] = np.argmax(model.ann_forward(x[:64]), axis=1)
        return self._models[key]

    def _torch_threads(self, device: str, probe) -> int | None:
        """Threads for a CPU torch peer: the faster of ``threads`` and 1 on a short probe.

        With other processes on the machine, torch's many small parallel regions can
        each wait a scheduler time slice for a descheduled thread (measured: 7x slower
        with 2 threads than with 1 at load 4 on 2 cores), which would inflate our
        speed-up; the peer gets its better setting. Restored by _restore_threads.
        """
        if device != "cpu" or self.torch is None:
            return None
        if self.threads == 1 or not self.opt.thread_probe:
            self.torch.set_num_threads(self.threads)
            return self.threads
        times = {}
        for n in (self.threads, 1):
            self.torch.set_num_threads(n)
            probe()
            t0 = time.perf_counter()
            probe()
            times[n] = time.perf_counter() - t0
        best = min(times, key=times.get)
        self.torch.set_num_threads(best)
        return best

    def _restore_threads(self):
        if self.torch is not None:
            self.torch.set_num_threads(self.threads)

    # ---------------------------------------------------------- memory
    def _memory(self, device: str, what: str):
        if device == "cpu":
            return measure.HostPeak()
        if self.cuda_torch:
            return measure.GpuPeak("torch" if what == "torch" else "meminfo")
        return measure.NoMemory()

    def _sync(self, device):
        if device == "cuda" and self.cuda_torch:
            return self.torch.cuda.synchronize
        return None

    # ---------------------------------------------------------- one config
    def run_config(self, cfg: Config) -> list:
        self.say(f"[{cfg.key}] {cfg.note}")
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        model, x = self.model(cfg.net, cfg.batch)
        xb = x[:cfg.batch]
        rows = []
        ann = self._ann(cfg, model, xb)
        if ann:
            rows.append(ann)
        schedules = self.opt.cuda_schedules if cfg.device == "cuda" else (None,)
        ours = self._ours(cfg, model, x, schedules[0])
        if ours:
            rows.append(ours)
        ours_result = ours.pop("_result", None) if ours else None
        for schedule in schedules[1:] if ours else ():  # the other CUDA time loops, as rows of their own
            other = self._ours(cfg, model, x, schedule)
            other.pop("_result", None)
            rows.append(other)
        if self.torch is not None and (cfg.device == "cpu" or self.cuda_torch):
            rows.append(self._torch_loop(cfg, model, x, ours_result))
        elif cfg.device == "cpu" or not self.cuda_torch:
            self.say(f"  torch-loop skipped: {self.torch_reason or 'no CUDA device visible to torch'}")
        if cfg.device == "cpu" and self.opt.use_reference:
            rows.append(self._reference(cfg, model, x, ours_result))
        ann_time = ann["batch_time_s"] if ann else None
        ann_b1 = ann["latency_b1_ms"] if ann else None
        ours_time = ours["batch_time_s"] if ours else None
        for r in rows:
            r.update(net=cfg.net, device=cfg.device, batch=cfg.batch, steps=cfg.steps,
                     early_stop=cfg.early_stop, config_note=cfg.note, load_average_before=load_before)
            r["snn_over_ann"] = _ratio(r["batch_time_s"], ann_time)
            r["b1_over_ann_b1"] = _ratio(r.get("latency_b1_ms"), ann_b1)
            r["speedup_of_ours"] = _ratio(r["batch_time_s"], ours_time)
        if ours:
            ours["speedup_over"] = {r["impl"]: r["speedup_of_ours"] for r in rows if r is not ours}
            ours["speedup_b1_over"] = {r["impl"]: _ratio(r.get("latency_b1_ms"), ours.get("latency_b1_ms"))
                                       for r in rows if r is not ours}
        return rows

    # ---------------------------------------------------------- ours
    def _ours(self, cfg, model, x, schedule=None):
        """Our backend's row; on CUDA with the time loop `schedule` (EngineOptions.cuda_schedule;
        None: its default, TTFS_CUDA_SCHEDULE where set)."""
        backend = cfg.device
        if backend == "cuda" and not self.cuda_ours:
            self.say(f"  ttfs-cuda skipped: {tn.build_info()['cuda_status']}")
            return None
        xb = x[:cfg.batch]
        options = EngineOptions(cuda_schedule=schedule or None)
        sim = tn.Simulator(model, duration=cfg.steps, backend=backend, batch_size=cfg.batch,
                           early_stop=cfg.early_stop, num_threads=self.threads, options=options)
        ran = sim._engine.schedule if backend == "cuda" else None
        if schedule and ran != schedule:
            self.say(f"  ttfs-cuda: the {schedule} schedule does not support this configuration; ran {ran}")
        # warm-up on a few samples (per-sample work is independent of the batch on the CPU)
        warm_n = cfg.batch if backend == "cuda" else min(cfg.batch, 2 * self.threads)
        sim.run(x[:warm_n])
        if backend == "cpu":   # the RSS high-water mark costs nothing: measure while timing
            with self._memory(cfg.device, "ours") as mem:
                tm = measure.timed(lambda: sim.run(xb), warmup=0, **self.budget)
        else:                  # GPU memory is polled by a thread: one extra run, not timed
            tm = measure.timed(lambda: sim.run(xb), warmup=0, **self.budget)
            with self._memory(cfg.device, "ours") as mem:
                sim.run(xb)
        res = tm["last"]
        b1 = measure.timed(lambda: sim.run(x[:1]), warmup=2, **self.b1_budget)
        ann_pred = self.ann_predictions(cfg.net)[:cfg.batch]
        decided = res.predictions >= 0
        row = _row(f"ttfs-{backend}" + ("-layer" if ran == "layer" else ""), cfg, tm, cfg.batch, b1, mem)
        row["schedule"] = ran
        row["window_steps"] = sim._engine.window_steps if ran == "layer" else None
        row.update(spikes_per_neuron=res.spikes_per_neuron, synops_per_sample=res.synops_per_sample,
                   ann_ops=res.ann_ops, synops_over_ann_ops=_ratio(res.synops_per_sample, res.ann_ops),
                   decided=float(decided.mean()), mean_decision_step=res.mean_latency_steps,
                   snn_ann_prediction_agreement=float(np.mean(res.predictions[:len(ann_pred)] == ann_pred)),
                   engine_wall_s=res.wall_time, threads=self.threads if backend == "cpu" else None,
                   _result=res)
        # the other device's result for the same configuration, if it ran first
        key = (cfg.net, cfg.batch, cfg.steps, cfg.early_stop)
        mine = tl.result_arrays(res, min(cfg.batch, 64))
        other = self._ours_results.get(key)
        if other is not None:
            k = min(len(other[1]["predictions"]), len(mine["predictions"]))
            agree = tl.compare(tl.result_arrays_slice(other[1], k), tl.result_arrays_slice(mine, k))
            agree["verified"] = bool(agree["predictions_all_equal"] and agree["spike_time_agreement"] >= 0.999)
            agree["against"] = f"ttfs-{other[0]}"
            row["agreement"] = agree
            self.say(f"  ttfs-{backend} vs ttfs-{other[0]} on {k} samples: predictions "
                     f"{agree['predictions_equal']}/{k} equal, first-spike times "
                     f"{100 * agree['spike_time_agreement']:.4f}% equal")
        else:
            self._ours_results[key] = (backend, {  # copies: do not keep the whole result alive
                "predictions": mine["predictions"].copy(), "synops_t": mine["synops_t"].copy(),
                "first_spike_times": {n: t.copy() for n, t in mine["first_spike_times"].items()}})
        self.say(f"  {row['impl']}: {_fmt_ms(row['batch_time_s'])} per batch of {cfg.batch} "
                 f"({tm['runs']} runs), batch-1 {row['latency_b1_ms']:.3f} ms; "
                 f"{decided.sum()}/{cfg.batch} samples decided, mean decision step "
                 f"{res.mean_latency_steps:.1f}")
        return row

    # ---------------------------------------------------------- ANN
    def _ann(self, cfg, model, xb):
        dev = cfg.device
        if self.torch is not None and (dev == "cpu" or self.cuda_torch):
            net = tl.TorchANN(model, device=dev)
            xd = net.to_device(xb)
            x1 = net.to_device(xb[:1])
            sync = self._sync(dev)
            threads = self._torch_threads(dev, lambda: net(xd))
            with self._memory(dev, "torch") as mem:
                tm = measure.timed(lambda: net(xd), sync=sync, warmup=3, **_more(self.budget))
            threads_b1 = self._torch_threads(dev, lambda: [net(x1) for _ in range(3)])
            b1 = measure.timed(lambda: net(x1), sync=sync, warmup=3, **_more(self.b1_budget))
            self._restore_threads()
            row = _row("ann-torch" + ("-cudnn" if dev == "cuda" else ""), cfg, tm, cfg.batch, b1, mem,
                       note="input already on the device")
            row.update(torch_threads=threads, torch_threads_b1=threads_b1)
            return row
        if dev != "cpu":
            self.say("  ANN on the GPU skipped: torch with CUDA is not available")
            return None
        with self._memory(dev, "ann") as mem:
            tm = measure.timed(lambda: model.ann_forward(xb), warmup=1, **self.budget)
        b1 = measure.timed(lambda: model.ann_forward(xb[:1]), warmup=1, **self.b1_budget)
        return _row("ann-numpy", cfg, tm, cfg.batch, b1, mem, note="torch unavailable: numpy model.ann_forward")

    # ---------------------------------------------------------- torch loop
    def _torch_loop(self, cfg, model, x, ours_result):
        dev = cfg.device
        cap = self.opt.torch_samples or (
            (TORCH_CPU_SAMPLES_QUICK if self.opt.quick else TORCH_CPU_SAMPLES).get(cfg.net, 4)
            if dev == "cpu" else cfg.batch)
        k = max(1, min(cfg.batch, cap))
        loop = tl.TorchTTFS(model, cfg.steps, device=dev)
        xk = x[:k]
        sync = self._sync(dev)
        loop.run(xk[:1] if dev == "cpu" else xk, steps=min(cfg.steps, 3))   # warm-up
        if sync:
            sync()
        # Verification run, recording what our backends return (first-spike times, spike
        # counts, synaptic operations); the timed runs record only the class counts
        # (predictions), unless --torch-record: the peer is timed at its leanest.
        got = loop.to_numpy(loop.run(xk, record=True, early_stop=cfg.early_stop))
        record = self.opt.torch_record
        probe_steps = min(cfg.steps, 4)
        threads = self._torch_threads(dev, lambda: loop.run(xk, record=record, steps=probe_steps))
        with self._memory(dev, "torch") as mem:
            tm = measure.timed(lambda: loop.run(xk, record=record, early_stop=cfg.early_stop), sync=sync,
                               warmup=0, **self.budget)
        threads_b1 = threads
        if k == 1:
            b1 = tm
        else:
            threads_b1 = self._torch_threads(dev, lambda: loop.run(x[:1], record=record, steps=probe_steps))
            b1 = measure.timed(lambda: loop.run(x[:1], record=record, early_stop=cfg.early_stop), sync=sync,
                               warmup=1 if dev == "cuda" else 0, **self.b1_budget)   # cuDNN autotunes a new shape
        self._restore_threads()
        notes = [] if k == cfg.batch else [f"ran {k} of {cfg.batch} samples, time scaled per sample"]
        notes.append("timed recording everything" if record else "timed recording class counts only")
        row = _row("torch-loop", cfg, tm, k, b1, mem, note="; ".join(notes))
        row.update(torch_threads=threads, torch_threads_b1=threads_b1)
        if ours_result is not None:
            agree = tl.compare(tl.result_arrays(ours_result, k), got)
            ok = agree["predictions_all_equal"] and agree["spike_time_agreement"] >= MIN_SPIKE_TIME_AGREEMENT
            agree["verified"] = bool(ok)
            row["agreement"] = agree
            self.say(f"  torch-loop vs ttfs-{dev} on {k} samples: predictions "
                     f"{agree['predictions_equal']}/{k} equal, first-spike times "
                     f"{100 * agree['spike_time_agreement']:.3f}% equal (worst layer {agree['worst_layer']} "
                     f"{100 * agree['worst_layer_agreement']:.2f}%) -> "
                     + ("VERIFIED" if ok else "NOT VERIFIED: this peer computes something else"))
        spikes = sum(int(v.sum()) for v in got["spike_counts"].values())
        neurons = sum(s.size for s in model.spiking_layers)
        synops = float(got["synops_t"].sum(axis=1).mean())
        ann_ops = connectivity.ann_operations(model, "exact")
        row.update(spikes_per_neuron=spikes / (neurons * k), synops_per_sample=synops, ann_ops=ann_ops,
                   synops_over_ann_ops=_ratio(synops, ann_ops))
        self.say(f"  torch-loop: {_fmt_ms(row['batch_time_s'])} per batch of {cfg.batch}"
                 + (f" (scaled from {k})" if k < cfg.batch else "") + f", batch-1 {row['latency_b1_ms']:.1f} ms")
        return row

    # ---------------------------------------------------------- reference
    def _reference(self, cfg, model, x, ours_result):
        k = max(1, min(cfg.batch, self.opt.reference_samples or REFERENCE_SAMPLES.get(cfg.net, 1)))
        sim = tn.Simulator(model, duration=cfg.steps, backend="reference", batch_size=k,
                           early_stop=cfg.early_stop)
        with self._memory("cpu", "reference") as mem:
            tm = measure.timed(lambda: sim.run(x[:k]), warmup=0, min_repeats=1, min_time=0.0, max_time=0.0)
        b1 = tm if k == 1 else None
        row = _row("reference", cfg, tm, k, b1, mem, note=f"numpy; ran {k} of {cfg.batch} samples, scaled per sample"
                   if k < cfg.batch else "numpy")
        res = tm["last"]
        if ours_result is not None:
            agree = tl.compare(tl.result_arrays(ours_result, k), tl.result_arrays(res))
            agree["verified"] = bool(agree["predictions_all_equal"] and agree["spike_time_agreement"] >= 0.999)
            row["agreement"] = agree
            self.say(f"  reference vs ttfs-{cfg.device} on {k} samples: predictions "
                     f"{agree['predictions_equal']}/{k} equal, first-spike times "
                     f"{100 * agree['spike_time_agreement']:.3f}% equal")
        row.update(spikes_per_neuron=res.spikes_per_neuron, synops_per_sample=res.synops_per_sample,
                   ann_ops=res.ann_ops, synops_over_ann_ops=_ratio(res.synops_per_sample, res.ann_ops))
        self.say(f"  reference: {tm['median']:.2f} s for {k} sample(s)")
        return row


def _more(budget):
    """Fast measurements (the ANN) get more repeats."""
    b = dict(budget)
    b["min_repeats"] = max(b["min_repeats"], 10)
    b["max_repeats"] = 200
    return b


def _ratio(a, b):
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def _row(impl, cfg, tm, samples_run, b1, mem, note=""):
    per_sample = tm["median"] / samples_run
    batch_time = per_sample * cfg.batch
    return {"impl": impl, "samples_run": samples_run, "scaled": samples_run != cfg.batch,
            "batch_time_s": batch_time, "samples_per_s": cfg.batch / batch_time if batch_time > 0 else None,
            "runs": tm["runs"], "times_s": [round(t, 6) for t in tm["times"]],
            "latency_b1_ms": 1e3 * b1["median"] if b1 else None,
            "latency_b1_runs": b1["runs"] if b1 else None,
            "peak_mem_mib": mem.peak_mib, "mem_delta_mib": mem.delta_mib, "mem_method": mem.method,
            "note": note}


# ------------------------------------------------------------------ output
def _fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms < 1000 else f"{seconds:.3g} s"


def _num(v, fmt="{:.3g}", none="-"):
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


COLUMNS = [
    ("net", 9), ("dev", 4), ("batch", 5), ("T", 4), ("impl", 15), ("ran", 5), ("ms/batch", 10),
    ("samples/s", 10), ("b1 ms", 9), ("x ANN", 8), ("ours x", 8), ("spk/neu", 7),
    ("syn/ANN", 7), ("mem MiB", 13), ("agreement", 18),
]


def format_table(rows: list) -> str:
    """A readable fixed-width table, one line per (configuration, implementation)."""
    head = " ".join(name.rjust(w) if i > 4 else name.ljust(w) for i, (name, w) in enumerate(COLUMNS))
    lines = [head, "-" * len(head)]
    last_key = None
    for r in rows:
        key = (r["net"], r["device"], r["batch"], r["steps"])
        if last_key is not None and key != last_key:
            lines.append("")
        last_key = key
        agree = r.get("agreement")
        if agree:
            a = f"{agree['predictions_equal']}/{agree['samples']} {100 * agree['spike_time_agreement']:.2f}%"
            if not agree.get("verified", True):
                a += " !"
        else:
            a = ""
        mem = "-"
        if r.get("peak_mem_mib") is not None:
            mem = f"{r['peak_mem_mib']:.0f}"
            if r.get("mem_delta_mib") is not None:
                mem += f" (+{max(0.0, r['mem_delta_mib']):.0f})"
        impl = r["impl"]
        if r.get("torch_threads"):
            impl += f" [{r['torch_threads']}t]"
        cells = [
            r["net"], r["device"], str(r["batch"]), str(r["steps"]), impl,
            f"{r['samples_run']}{'*' if r['scaled'] else ''}",
            _num(r["batch_time_s"] * 1e3 if r["batch_time_s"] else None, "{:.4g}"),
            _num(r.get("samples_per_s"), "{:.4g}"),
            _num(r.get("latency_b1_ms"), "{:.4g}"),
            _num(r.get("snn_over_ann"), "{:.3g}"),
            _num(r.get("speedup_of_ours"), "{:.3g}"),
            _num(r.get("spikes_per_neuron"), "{:.3f}"),
            _num(r.get("synops_over_ann_ops"), "{:.3f}"),
            mem, a,
        ]
        lines.append(" ".join(c.rjust(w) if i > 4 else c.ljust(w) for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS))))
    return "\n".join(lines)


LEGEND = """\
ran: samples actually simulated (* = fewer than the batch, time scaled per sample to the batch)
ms/batch: median wall time of one batch (Simulator.run with host input and host results for ttfs-*,
  input transfer + loop + sync for torch-loop, forward pass with input on the device for ann-*)
b1 ms: batch-1 latency, median of several runs after warm-up
x ANN: time / ANN time at the same batch (SNN time / ANN time); ours x: time / ttfs time (speed-up of ours)
spk/neu: spikes per neuron per sample; syn/ANN: synaptic ops per sample / ANN ops (exact convention)
mem MiB: peak RSS of the process during the measurement (+ what it added) on cpu; GPU: torch peak
  allocation for torch peers, cudaMemGetInfo peak delta for ttfs-cuda
agreement: predictions equal / samples and first-spike times equal, against ttfs on the same samples
[Nt]: threads a CPU torch peer used (the faster of --threads and 1 on a short probe)"""


# The targets per (net, device, batch, steps): (what, result key or "loop"
# for the speed-up over the PyTorch loop, goal, stretch goal or None, lower is better).
TARGETS = {
    ("lenet", "cpu", 16, 50): [("speed-up over the loop", "loop", 20, None, False)],
    ("vgg", "cuda", 256, 100): [("SNN/ANN time", "snn_over_ann", 10, 3, True),
                                ("speed-up over the loop", "loop", 30, 100, False)],
    ("lenet", "cuda", 1, 64): [("batch-1 ms", "latency_b1_ms", 1.0, 0.2, True)],
}


def summary(rows: list, harness: Harness) -> list:
    """One line per configuration: speed-ups and, where the issue sets them, the targets."""
    out = []
    configs = []
    for r in rows:
        k = (r["net"], r["device"], r["batch"], r["steps"])
        if k not in configs:
            configs.append(k)
    for k in configs:
        rs = {r["impl"]: r for r in rows if (r["net"], r["device"], r["batch"], r["steps"]) == k}
        for name in (f"ttfs-{k[1]}", f"ttfs-{k[1]}-layer"):  # each CUDA time loop on a line of its own
            if name in rs:
                out.append(_summary_line(k, name, rs))
    return out


def _summary_line(k, name, rs) -> str:
    ours = rs[name]
    parts = [f"{k[0]} {k[1]} b{k[2]} T{k[3]}: {name} {_fmt_ms(ours['batch_time_s'])}"]
    if ours.get("snn_over_ann") is not None:
        parts.append(f"{ours['snn_over_ann']:.1f}x ANN")
    loop = rs.get("torch-loop")
    speedup = _ratio(loop["batch_time_s"], ours["batch_time_s"]) if loop else None
    if speedup:
        verified = loop.get("agreement", {}).get("verified")
        parts.append(f"{speedup:.1f}x faster than the PyTorch loop" + ("" if verified else " (loop NOT verified)"))
    for label, value, goal, stretch, lower in TARGETS.get(k, ()):
        x = speedup if value == "loop" else ours.get(value)
        if x is None:
            continue
        def met(g):
            return x <= g if lower else x >= g
        line = f"target {label} {'<=' if lower else '>='} {goal:g}: {'met' if met(goal) else 'NOT met'}"
        if stretch:
            line += f" (stretch {stretch:g}: {'met' if met(stretch) else 'not met'})"
        parts.append(line)
    return ", ".join(parts)


# ------------------------------------------------------------------ driver
def run(opt: Options) -> dict:
    """Run the benchmark; returns the report (also written to ``opt.json_path``)."""
    harness = Harness(opt)
    if opt.save_models:
        nets = opt.nets or tuple(networks.NETWORKS)
        for net in nets:
            model, x = harness.model(net, 256)
            path = model.save(os.path.join(opt.save_models, net))
            np.save(os.path.join(opt.save_models, f"{net}.inputs.npy"), x[:256])
            harness.say(f"saved {net} to {path} (inputs: {net}.inputs.npy)")
        if opt.save_only:
            return {"format": "ttfs-native-bench", "version": 1, "saved": opt.save_models,
                    "messages": harness.messages, "rows": []}
    devices = []
    for d in opt.devices:
        if d == "cuda" and not (harness.cuda_ours or harness.cuda_torch):
            harness.say("cuda: no CUDA device (ttfs-native: "
                        f"{tn.build_info()['cuda_status']}; torch: "
                        f"{'no CUDA' if harness.torch is not None else harness.torch_reason}) - skipped")
            continue
        devices.append(d)
    opt_devices = Options(**{**asdict(opt), "devices": tuple(devices)})
    configs = configurations(opt_devices)
    info = measure.machine(harness.torch)
    info["ttfs_native"] = harness.build_info
    info["threads_used"] = harness.threads
    if harness.torch_reason:
        harness.say(f"PyTorch peers: {harness.torch_reason}")
    load = info.get("load_average")
    if load and load[0] > (info.get("affinity") or info["cpu_count"] or 1) * 0.5:
        harness.say(f"warning: load average {load[0]:.2f} - other processes compete for the "
                    f"{info['cpu_count']} cores; timings will be noisy")
    t0 = time.perf_counter()
    rows = []
    for cfg in configs:
        rows += harness.run_config(cfg)
    elapsed = time.perf_counter() - t0
    table = format_table(rows)
    lines = summary(rows, harness)
    if opt.verbose:
        print()
        print(table)
        print()
        print(LEGEND)
        print()
        for line in lines:
            print(line)
        print(f"\ntotal {elapsed:.1f} s; machine: {info['cpu']} ({info['cpu_count']} cores, "
              f"{harness.threads} threads used)" + (f", GPU {info['gpu']['name']}" if info.get("gpu") else ""))
    report = {"format": "ttfs-native-bench", "version": 1, "machine": info,
              "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opt).items()},
              "configurations": [asdict(c) for c in configs], "rows": rows, "summary": lines,
              "table": table, "messages": harness.messages, "elapsed_s": elapsed,
              "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if opt.json_path:
        with open(opt.json_path, "w") as f:
            json.dump(_jsonable(report), f, indent=1)
        if opt.verbose:
            print(f"wrote {opt.json_path}")
    return report


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v
