"""The Simulator: validates, plans, allocates, calls a backend, collects results."""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..model import Model, check_input, load_model
from ..model import connectivity
from ..model.model import check_input_shape, input_range_warning
from ..model.transforms import softmax_to_relu as relu_output
from .options import EngineOptions
from .params import SimParams
from .metrics import input_macs, layer_accumulates
from .reference import ReferenceEngine
from .window_plan import plan_for
from .window_reference import WindowReferenceEngine
from .result import SimulationResult

BACKENDS = ("auto", "cpu", "cuda", "reference")
DLPACK_CUDA, DLPACK_CUDA_MANAGED = 2, 13  # DLPack device types read by the CUDA backend
# Result arrays larger than this are refused up front rather than failing mid-run.
MAX_RESULT_BYTES = 16 * 2 ** 30


def _core():
    from .. import _core as core  # the compiled extension
    return core


def default_threads() -> int:
    """Threads of the CPU backend when ``num_threads`` is None: ``OMP_NUM_THREADS``
    if set, else the CPUs this process may run on. Not OpenMP's current default,
    which a library sharing the OpenMP runtime changes behind our back
    (``torch.set_num_threads(1)`` would make every simulation single-threaded)."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        return int(first)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cuda_status() -> tuple:
    """(available, reason) for the CUDA backend."""
    core = _core()
    if not core.cuda_compiled:
        return False, "this build of ttfs-native has no CUDA backend (no CUDA compiler found at build time, or TTFS_CUDA=OFF)"
    ok, reason = core.cuda_device_status()
    return bool(ok), reason


class Simulator:
    """Simulate a converted SNN with time-to-first-spike coding and a dynamic threshold.

    Built once for a model and a parameter set, then :meth:`run` any number
    of times. Parameters follow SNN Toolbox's names: ``duration`` is
    simulated time and the number of steps is ``int(duration / dt)``;
    ``tau_refrac`` defaults to ``duration`` (each neuron fires at most once).

    backend: ``"cpu"`` (C++/OpenMP), ``"cuda"``, ``"reference"`` (numpy,
    slow, the oracle) or ``"auto"`` (CUDA when a GPU is visible, else CPU).
    batch_size: samples handed to the backend per call (bounds memory; results
    do not depend on it). num_threads: CPU threads (default: default_threads()).
    ops_convention: ``"exact"`` counts real connections,
    ``"snntoolbox"`` the original's approximate fan-outs.
    record_spike_times=False leaves ``first_spike_times`` empty (saves memory
    and copies on large runs).

    On the CUDA backend, input that already lives on the simulator's GPU
    (any DLPack producer: PyTorch, CuPy, JAX, :class:`DeviceArray`; float32,
    C-contiguous) is read in place, without a copy. spike_times_on_device=True
    leaves ``first_spike_times`` on the GPU as :class:`DeviceArray` (zero-copy
    into ``torch.from_dlpack`` and the like); the other results stay on the host.
    options: how the engines compute (:class:`EngineOptions`: CPU kernels and
    sharing, CUDA schedule, synapses, window, profiling, memory limit); never
    what. Left out, each option takes its environment variable's value or its
    built-in default. cuda_memory_limit: shorthand for
    ``options.cuda_memory_limit``, bytes of GPU memory the CUDA backend's
    buffers may take (default: what the device has free, less a margin); a
    batch that does not fit runs in chunks, and a sample that alone does not
    fit is an error naming the sizes. The engine of each backend reads its own
    options and ignores the others'.
    """

    def __init__(self, model, duration: float = 200, dt: float = 1.0, v_thresh: float = 1.0,
                 tau_refrac: float | None = None, leak: bool = False, backend: str = "auto",
                 batch_size: int | None = None, seed: int = 0, early_stop: bool = False,
                 ops_convention: str = "exact", num_threads: int | None = None,
                 softmax_to_relu: bool = False, record_spike_times: bool = True,
                 spike_times_on_device: bool = False, cuda_memory_limit: int | None = None,
                 options: EngineOptions | None = None, coding: str = "ttfs-dyn-thresh",
                 window: dict | None = None):
        if isinstance(model, (str, os.PathLike, Path)):
            model = load_model(model)
        if not isinstance(model, Model):
            raise TypeError(f"model must be a ttfs_native Model or a model folder path, got {type(model).__name__}")
        if softmax_to_relu:
            model = relu_output(model)
        self.num_to_test = None  # set by from_toolbox_config
        # First-spike times are one float per neuron and sample (265 MB for a
        # VGG-style net at batch 256): a run that needs only predictions,
        # counts and operation counts can leave them out.
        self.record_spike_times = bool(record_spike_times)
        self.model = model
        self.params = SimParams(duration=duration, dt=dt, v_thresh=v_thresh, tau_refrac=tau_refrac,
                                leak=leak, seed=seed, early_stop=early_stop, coding=coding)
        # ttfs-window (docs/WINDOW_SEMANTICS.md): windows from `window` or the model's settings
        if window is not None and coding != "ttfs-window":
            raise ValueError(f"window settings are only used by coding 'ttfs-window' (coding is {coding!r})")
        self._window_plan = plan_for(model, window) if coding == "ttfs-window" else None
        if self._window_plan is not None and self.params.steps < self._window_plan.read_step:
            raise ValueError(f"coding 'ttfs-window': the output of this model is read at step "
                             f"{self._window_plan.read_step}; duration / dt gives only {self.params.steps} steps")
        out = model.output_layer
        if early_stop and coding != "ttfs-window" and out.is_weighted and out.activation == "softmax":
            raise ValueError("early_stop needs a ReLU output layer: a softmax output fires at random "
                             "from the first step")
        if ops_convention not in connectivity.CONVENTIONS:
            raise ValueError(f"ops_convention must be one of {list(connectivity.CONVENTIONS)}, "
                             f"got {ops_convention!r}")
        self.ops_convention = ops_convention
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if options is None:
            options = EngineOptions()
        elif not isinstance(options, EngineOptions):
            raise TypeError(f"options must be an EngineOptions, got {type(options).__name__}")
        if cuda_memory_limit is not None:
            options = replace(options, cuda_memory_limit=cuda_memory_limit)
        self.options = options
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer))
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        self.num_threads = int(num_threads) if num_threads else default_threads()
        self.backend = self._pick_backend(backend)
        self.spike_times_on_device = bool(spike_times_on_device)
        if self.spike_times_on_device and (self.backend != "cuda" or not self.record_spike_times):
            raise ValueError("spike_times_on_device needs backend='cuda' and record_spike_times=True "
                             f"(got backend={self.backend!r}, record_spike_times={self.record_spike_times})")
        self.batch_size = int(batch_size) if batch_size else (64 if self.backend == "reference" else 1024)
        self.fanouts = connectivity.fanouts(model, ops_convention)
        self.ann_ops = connectivity.ann_operations_as_trained(model, ops_convention)
        self.ann_macs = connectivity.ann_macs_as_trained(model, ops_convention)
        self._engine = self._make_engine()

    def _make_engine(self):
        """The backend's engine: ``run(inputs, results)`` on every backend."""
        if self.backend == "reference":
            if self._window_plan is not None:
                return WindowReferenceEngine(self.model, self.params, self.fanouts, self._window_plan)
            return ReferenceEngine(self.model, self.params, self.fanouts, self.record_spike_times)
        core = _core()
        p = self.params
        coding = {}
        if self._window_plan is not None:  # docs/WINDOW_SEMANTICS.md: the plan's constants, typed
            from .window_native import build_window_network, window_config
            network = build_window_network(core, self.model, self.fanouts, self._window_plan)
            coding = dict(coding=core.Coding.window, window=window_config(core, self._window_plan))
        else:
            from .plan import build_network
            network = build_network(core, self.model, self.fanouts)
        config = core.SimConfig(steps=p.steps, dt=p.dt, v_thresh=p.v_thresh, tau_refrac=p.tau_refrac,
                                leak=bool(p.leak), seed=int(p.seed), early_stop=bool(p.early_stop),
                                record_spike_times=self.record_spike_times, **coding)
        engine_type = core.CpuEngine if self.backend == "cpu" else core.CudaEngine
        return engine_type(network, config, self.options.to_core(core, self.num_threads))  # copies all

    @classmethod
    def for_model(cls, model_or_dir, **overrides) -> "Simulator":
        """A Simulator with the settings the model (folder) carries (``model.simulation``);
        keyword arguments other than None win. A new ``dt`` without a new
        ``duration`` keeps the stored number of steps. Without stored settings
        this is ``Simulator(model, **overrides)``.
        """
        model = load_model(model_or_dir) if isinstance(model_or_dir, (str, os.PathLike, Path)) else model_or_dir
        if not isinstance(model, Model):
            raise TypeError(f"model must be a ttfs_native Model or a model folder path, got {type(model).__name__}")
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = dict(model.simulation)
        if "dt" in given and "duration" not in given and "duration" in settings:
            settings["duration"] = int(settings["duration"] / settings.get("dt", 1.0)) * given["dt"]
        settings.update(given)
        return cls(model, **settings)

    @classmethod
    def from_toolbox_config(cls, model, config_path, **overrides) -> "Simulator":
        """A Simulator set up from an SNN Toolbox ``config.ini`` ([simulation] duration,
        dt, batch_size, num_to_test; [cell] v_thresh, tau_refrac, leak; [conversion]
        softmax_to_relu). Keyword arguments override the file; unused keys of the
        file are named in a ConfigWarning. ``num_to_test`` is kept as ``sim.num_to_test``.
        """
        from .toolbox_config import read_toolbox_config
        settings = read_toolbox_config(config_path)
        num_to_test = settings.pop("num_to_test", None)
        if num_to_test is not None and num_to_test < 1:
            raise ValueError(f"{config_path}: num_to_test must be >= 1, got {num_to_test}")
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if "duration" not in settings:
            raise ValueError(f"{config_path} has no [simulation] duration and none was given")
        sim = cls(model, **settings)
        sim.num_to_test = num_to_test
        return sim

    @staticmethod
    def _pick_backend(backend: str) -> str:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if backend == "reference":
            return backend
        if backend == "auto":
            return "cuda" if cuda_status()[0] else "cpu"
        if backend == "cuda":
            ok, reason = cuda_status()
            if not ok:
                raise RuntimeError(f"the CUDA backend is unavailable: {reason}")
        return backend

    @property
    def steps(self) -> int:
        return self.params.steps

    def run(self, x, labels=None, progress=None, sample_offset: int = 0) -> SimulationResult:
        """Simulate every sample of ``x`` (N, *input_shape); ``labels`` (N,) give accuracy_t.

        ``progress``: optional callable ``progress(done, total)`` after each batch.
        ``sample_offset``: the index of ``x[0]`` in the whole input when ``x`` is
        one part of it: a softmax output's random stream is keyed by the sample's
        index in the whole input (SEMANTICS.md), so parts run with their offsets
        give the same results as one run on the whole input.
        """
        if isinstance(sample_offset, bool) or not isinstance(sample_offset, (int, np.integer)) \
                or sample_offset < 0:
            raise ValueError(f"sample_offset must be a non-negative integer, got {sample_offset!r}")
        device_input = self._device_input(x)  # input in GPU memory, read in place
        try:
            return self._run(x, device_input, labels, progress, int(sample_offset))
        finally:
            if device_input is not None:
                device_input.close()

    def _device_input(self, x):
        """A consumed DLPack view of ``x`` if it lives in CUDA memory, else None."""
        if isinstance(x, np.ndarray) or not hasattr(x, "__dlpack_device__"):
            return None
        kind, device = (int(v) for v in x.__dlpack_device__())
        if kind not in (DLPACK_CUDA, DLPACK_CUDA_MANAGED):
            return None  # host memory: check_input reads it through numpy
        if self.backend != "cuda":
            raise ValueError(f"input lives on CUDA device {device}; the {self.backend} backend needs it in "
                             "host memory (e.g. tensor.cpu()), or use backend='cuda'")
        if device != self._engine.device:
            raise ValueError(f"input lives on CUDA device {device}, but this simulator runs on device "
                             f"{self._engine.device}")
        # The producer orders its pending writes before our stream (DLPack exchange).
        try:
            capsule = x.__dlpack__(stream=self._engine.stream_handle)
        except (BufferError, TypeError, RuntimeError, ValueError) as e:
            raise ValueError(f"input on CUDA device {device} could not be exported through DLPack ({e}); "
                             "for a PyTorch tensor that requires grad, pass tensor.detach()") from None
        view = _core().DLPackInput(capsule)
        try:
            check_input_shape(self.model, view.shape, allow_empty=False)
            if view.dtype != "float32":
                raise ValueError(f"input on the GPU must be float32, got {view.dtype}; convert it there "
                                 "(e.g. x.float())")
            if not view.c_contiguous:
                raise ValueError("input on the GPU is not C-contiguous; pass a contiguous copy "
                                 "(e.g. x.contiguous())")
            if not self._engine.all_finite(view.data_ptr, int(np.prod(view.shape))):
                raise ValueError("input contains NaN or Inf")
        except BaseException:
            view.close()
            raise
        return view

    def _run(self, x, device_input, labels, progress, stream_offset: int = 0) -> SimulationResult:
        core = _core()
        if device_input is None:
            x = check_input(self.model, x, allow_empty=False)
            warning = input_range_warning(self.model, x)
            if warning:
                warnings.warn(warning, stacklevel=3)
            inputs = core.Input(x, stream_offset=stream_offset)
        else:
            inputs = core.Input(device_input, stream_offset=stream_offset)  # read in place on the GPU
        n = inputs.samples
        if labels is not None:
            labels = check_labels(labels, n, self.model.num_classes)
        steps, classes = self.steps, self.model.num_classes
        spiking = self.model.spiking_layers
        recorded = spiking if self.record_spike_times else []
        _check_result_size(n, classes, steps, 0 if self.spike_times_on_device else sum(s.size for s in recorded))
        if self.spike_times_on_device:
            first = {s.name: core.DeviceArray((n,) + s.output_shape, self._engine.device) for s in spiking}
        else:
            first = {s.name: np.zeros((n, s.size), np.float32) for s in recorded}
        membrane = np.zeros((n, classes), np.float32) if self._window_plan is not None else None
        results = core.Results(counts=np.zeros((n, classes, steps), np.int32), first_spike=list(first.values()),
                               spike_counts=np.zeros((n, len(spiking)), np.int64),
                               synops=np.zeros((n, steps), np.float64), stop_step=np.zeros(n, np.int32),
                               output_membrane=membrane)
        start = time.perf_counter()
        for lo in range(0, n, self.batch_size):
            hi = min(n, lo + self.batch_size)
            self._engine.run(inputs.rows(lo, hi), results)
            if progress is not None:
                progress(hi, n)
        wall = time.perf_counter() - start
        if self.spike_times_on_device:
            spike_times = first
        else:
            spike_times = {s.name: first[s.name].reshape((n,) + s.output_shape) for s in recorded}
        raw = {"counts": results.counts, "synops_t": results.synops, "stop_step": results.stop_step,
               "first_spike_times": spike_times, "output_membrane": membrane,
               "spike_counts": {s.name: results.spike_counts[:, j] for j, s in enumerate(spiking)}}
        return SimulationResult.from_raw(
            raw, labels=labels, ann_ops=self.ann_ops, neurons={s.name: s.size for s in spiking},
            dt=self.params.dt, backend=self.backend, ops_convention=self.ops_convention, wall_time=wall,
            ann_macs=self.ann_macs, parameters=self.model.num_parameters,
            input_macs=None if device_input is not None else input_macs(x, self.fanouts),
            layer_acs=None if self.spike_times_on_device or not first
            else layer_accumulates(spike_times, self.fanouts))


def check_labels(labels, n: int, classes: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"labels have shape {arr.shape}, expected ({n},) to match the input")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("labels must be integer class indices")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n and (arr.min() < 0 or arr.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got values in [{arr.min()}, {arr.max()}]")
    return arr


def _check_result_size(n: int, classes: int, steps: int, neurons: int):
    nbytes = n * (classes * steps * 4 + steps * 8 + neurons * 4)
    if nbytes > MAX_RESULT_BYTES:
        raise ValueError(f"the results of {n} samples x {steps} steps ({classes} classes, {neurons} "
                         f"spiking neurons) would need {nbytes / 2 ** 30:.1f} GiB; simulate fewer "
                         "samples per run or fewer steps")
