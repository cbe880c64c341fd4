"""Timing, memory and machine facts for the harness."""
from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time


def timed(fn, sync=None, warmup: int = 1, min_repeats: int = 3, max_repeats: int = 20,
          min_time: float = 1.0, max_time: float = 20.0) -> dict:
    """Median wall time of ``fn()`` after ``warmup`` calls.

    Repeats until at least ``min_repeats`` runs and ``min_time`` seconds, but
    stops after ``max_time`` seconds (at least one run) or ``max_repeats``.
    ``sync`` (e.g. torch.cuda.synchronize) is called before reading the clock.
    Returns {"median": s, "min": s, "runs": n, "times": [...], "last": fn's last value}.
    """
    last = None
    for _ in range(warmup):
        last = None
        last = fn()
        if sync:
            sync()
    times = []
    total = 0.0
    while True:
        last = None  # one result alive at a time, so a peak-memory reading is one run's
        t0 = time.perf_counter()
        last = fn()
        if sync:
            sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
        if len(times) >= max_repeats or total >= max_time:
            break
        if len(times) >= min_repeats and total >= min_time:
            break
    return {"median": statistics.median(times), "min": min(times), "runs": len(times),
            "times": times, "last": last}


# ------------------------------------------------------------- host memory
def _status_kib(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class HostPeak:
    """Peak resident memory of this process during a block.

    Linux: resets the high-water mark through /proc/self/clear_refs ("5") and
    reads VmHWM afterwards, so each block gets its own peak. Elsewhere (or if
    the reset is refused) falls back to getrusage's ru_maxrss, the peak of the
    whole process so far. ``peak_mib``: the peak RSS in MiB; ``delta_mib``: the
    peak minus the RSS when the block began (what the block added).
    """

    def __enter__(self):
        self.method = "ru_maxrss (process peak so far)"
        self.start_kib = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            if _status_kib("VmHWM") is not None:
                self.method = "VmHWM (reset per measurement)"
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        if self.method.startswith("VmHWM"):
            peak_kib = _status_kib("VmHWM")
        else:
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            if platform.system() == "Darwin":
                peak_kib /= 1024
        self.peak_mib = peak_kib / 1024
        self.delta_mib = (peak_kib - self.start_kib) / 1024 if self.start_kib is not None else None
        return False


# -------------------------------------------------------------- GPU memory
class GpuPeak:
    """GPU memory used during a block.

    ``mode="torch"``: torch.cuda.max_memory_allocated after a reset (the torch
    peers). ``mode="meminfo"``: device-wide used memory (cudaMemGetInfo through
    torch.cuda.mem_get_info) sampled every ~1 ms by a thread while the block
    runs (the native engine releases the GIL); delta_mib is the peak minus the
    use at the start.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.peak_mib = self.delta_mib = None
        self.method = None

    def __enter__(self):
        import torch
        self._torch = torch
        torch.cuda.synchronize()
        if self.mode == "torch":
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated"
        else:
            torch.cuda.empty_cache()
            free, total = torch.cuda.mem_get_info()
            self._start = self._peak = total - free
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
            self.method = "cudaMemGetInfo delta (polled)"
        return self

    def _poll(self):
        while not self._stop.is_set():
            free, total = self._torch.cuda.mem_get_info()
            self._peak = max(self._peak, total - free)
            time.sleep(0.001)

    def __exit__(self, *exc):
        torch = self._torch
        torch.cuda.synchronize()
        if self.mode == "torch":
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            free, total = torch.cuda.mem_get_info()
            peak = max(self._peak, total - free)
        self.peak_mib = peak / 2 ** 20
        self.delta_mib = (peak - self._start) / 2 ** 20
        return False


class NoMemory:
    """Placeholder when no measurement is possible."""
    method = None
    peak_mib = delta_mib = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------- machine facts
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(torch_module=None) -> dict:
    import numpy as np

    import ttfs_native as tn
    info = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numpy": np.__version__,
        "ttfs_native": tn.build_info(),
        "torch": None,
        "gpu": None,
    }
    mem = _status_kib("MemTotal")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1])
    except OSError:
        pass
    info["memory_gib"] = round(mem / 2 ** 20, 1) if mem else None
    if torch_module is not None:
        info["torch"] = torch_module.__version__
        info["torch_threads"] = torch_module.get_num_threads()
        if torch_module.cuda.is_available():
            p = torch_module.cuda.get_device_properties(0)
            info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 1),
                           "cuda": torch_module.version.cuda,
                           "cudnn": torch_module.backends.cudnn.version()}
    return info
