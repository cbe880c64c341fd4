"""Progress of long runs: a tqdm bar when tqdm is installed, else a line on stderr."""
from __future__ import annotations

import sys
import time


class Progress:
    """``progress(done, total)`` callback: a bar once the run has taken about a second."""

    def __init__(self, delay: float = 1.0, stream=None, desc: str = "simulating", unit: str = "sample"):
        self.start = time.perf_counter()
        self.desc, self.unit = desc, unit
        self.delay = delay
        self.stream = stream or sys.stderr
        self.bar = None
        self.shown = False

    def __call__(self, done: int, total: int):
        if not self.shown and (done >= total or time.perf_counter() - self.start < self.delay):
            return
        if not self.shown:
            self.shown = True
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, initial=done, unit=self.unit, desc=self.desc, file=self.stream)
            except ImportError:
                self.bar = None
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        else:
            self.stream.write(f"\r{self.desc} {done}/{total} {self.unit}s")
            self.stream.flush()
        if done >= total:
            self.close()

    def close(self):
        if self.shown:
            if self.bar is not None:
                self.bar.close()
            else:
                self.stream.write("\n")
                self.stream.flush()
            self.shown = False
            self.bar = None
