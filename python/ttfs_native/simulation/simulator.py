"""The Simulator: validates, plans, allocates, calls a backend, collects results."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..model import Model, check_input, load_model
from ..model import connectivity
from ..model.model import check_input_shape
from ..model.transforms import softmax_to_relu as relu_output
from .reference import simulate as reference_simulate
from .window_plan import plan_for
from .window_reference import simulate as window_simulate
from .params import SimParams
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
    cuda_memory_limit: bytes of GPU memory the CUDA backend's buffers may take
    (default: what the device has free, less a margin); a batch that does not
    fit runs in chunks, and a sample that alone does not fit is an error naming
    the sizes. Ignored by the other backends.
    """

    def __init__(self, model, duration: float = 200, dt: float = 1.0, v_thresh: float = 1.0,
                 tau_refrac: float | None = None, leak: bool = False, backend: str = "auto",
                 batch_size: int | None = None, seed: int = 0, early_stop: bool = False,
                 ops_convention: str = "exact", num_threads: int | None = None,
                 softmax_to_relu: bool = False, record_spike_times: bool = True,
                 spike_times_on_device: bool = False, cuda_memory_limit: int | None = None,
                 coding: str = "ttfs-dyn-thresh", window: dict | None = None):
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
        if cuda_memory_limit is not None and (isinstance(cuda_memory_limit, bool)
                                              or not isinstance(cuda_memory_limit, (int, np.integer))
                                              or cuda_memory_limit < 1):
            raise ValueError(f"cuda_memory_limit must be a positive number of bytes or None, "
                             f"got {cuda_memory_limit!r}")
        self.cuda_memory_limit = int(cuda_memory_limit) if cuda_memory_limit else None
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer))
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        self.num_threads = int(num_threads) if num_threads else default_threads()
        self.backend = self._pick_backend(backend)
        if self._window_plan is not None and self.backend != "reference":
            raise ValueError(f"coding 'ttfs-window' is not implemented by the {self.backend} backend yet; "
                             "use backend='reference'")
        self.spike_times_on_device = bool(spike_times_on_device)
        if self.spike_times_on_device and (self.backend != "cuda" or not self.record_spike_times):
            raise ValueError("spike_times_on_device needs backend='cuda' and record_spike_times=True "
                             f"(got backend={self.backend!r}, record_spike_times={self.record_spike_times})")
        self.batch_size = int(batch_size) if batch_size else (64 if self.backend == "reference" else 1024)
        self.fanouts = connectivity.fanouts(model, ops_convention)
        self.ann_ops = connectivity.ann_operations(model, ops_convention)
        self._engine = None
        if self.backend in ("cpu", "cuda"):
            core = _core()
            from .plan import build_network
            network = build_network(core, model, self.fanouts)
            p = self.params
            config = core.SimConfig(steps=p.steps, dt=p.dt, v_thresh=p.v_thresh, tau_refrac=p.tau_refrac,
                                    leak=bool(p.leak), seed=int(p.seed), early_stop=bool(p.early_stop),
                                    record_spike_times=self.record_spike_times,
                                    device_memory_limit=self.cuda_memory_limit or 0)
            engine_type = core.CpuEngine if self.backend == "cpu" else core.CudaEngine
            self._engine = engine_type(network, config)  # keeps its own copy

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

    def run(self, x, labels=None, progress=None) -> SimulationResult:
        """Simulate every sample of ``x`` (N, *input_shape); ``labels`` (N,) give accuracy_t.

        ``progress``: optional callable ``progress(done, total)`` after each batch.
        """
        device_input = self._device_input(x)  # input in GPU memory, read in place
        try:
            return self._run(x, device_input, labels, progress)
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

    def _run(self, x, device_input, labels, progress) -> SimulationResult:
        if device_input is None:
            x = check_input(self.model, x, allow_empty=False)
            n = x.shape[0]
        else:
            n = int(device_input.shape[0])
        if labels is not None:
            labels = check_labels(labels, n, self.model.num_classes)
        steps, classes = self.steps, self.model.num_classes
        spiking = self.model.spiking_layers
        recorded = spiking if self.record_spike_times else []
        _check_result_size(n, classes, steps, 0 if self.spike_times_on_device else sum(s.size for s in recorded))
        counts = np.zeros((n, classes, steps), np.int32)
        synops = np.zeros((n, steps), np.float64)
        stop_step = np.zeros(n, np.int32)
        if self.spike_times_on_device:
            device_first = {s.name: _core().DeviceArray((n,) + s.output_shape, self._engine.device)
                            for s in spiking}
            first = {}
        else:
            device_first = {}
            first = {s.name: np.zeros((n, s.size), np.float32) for s in recorded}
        spike_counts = np.zeros((n, len(spiking)), np.int64)
        in_bytes = 4 * int(np.prod(self.model.input_shape))
        start = time.perf_counter()
        for lo in range(0, n, self.batch_size):
            hi = min(n, lo + self.batch_size)
            if self.backend == "reference":
                raw = reference_simulate(self.model, x[lo:hi], self.params, self.fanouts, sample_offset=lo) \
                    if self._window_plan is None else \
                    window_simulate(self.model, x[lo:hi], self.params, self.fanouts, self._window_plan)
                counts[lo:hi], synops[lo:hi], stop_step[lo:hi] = raw["counts"], raw["synops_t"], raw["stop_step"]
                for j, s in enumerate(spiking):
                    if s.name in first:
                        first[s.name][lo:hi] = raw["first_spike_times"][s.name].reshape(hi - lo, -1)
                    spike_counts[lo:hi, j] = raw["spike_counts"][s.name]
            elif self.backend == "cpu":
                self._engine.run(x[lo:hi].reshape(hi - lo, -1), lo, counts[lo:hi],
                                 [a[lo:hi] for a in first.values()], spike_counts[lo:hi],
                                 synops[lo:hi], stop_step[lo:hi], self.num_threads)
            else:
                on_device = device_input is not None
                self._engine.run_cuda(
                    None if on_device else x[lo:hi].reshape(hi - lo, -1),
                    device_input.data_ptr + lo * in_bytes if on_device else 0, hi - lo, lo,
                    counts[lo:hi], [a[lo:hi] for a in first.values()], list(device_first.values()), lo,
                    spike_counts[lo:hi], synops[lo:hi], stop_step[lo:hi])
            if progress is not None:
                progress(hi, n)
        wall = time.perf_counter() - start
        if device_first:
            spike_times = device_first
        else:
            spike_times = {s.name: first[s.name].reshape((n,) + s.output_shape) for s in recorded}
        raw = {"counts": counts, "synops_t": synops, "stop_step": stop_step,
               "first_spike_times": spike_times,
               "spike_counts": {s.name: spike_counts[:, j] for j, s in enumerate(spiking)}}
        return SimulationResult.from_raw(
            raw, labels=labels, ann_ops=self.ann_ops, neurons={s.name: s.size for s in spiking},
            dt=self.params.dt, backend=self.backend, ops_convention=self.ops_convention, wall_time=wall)


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
