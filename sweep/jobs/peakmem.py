"""Peak memory of a job's compute, per rank: what ``sweep.memory`` estimates, measured by the job itself.

    probe = PeakMemory(device)     # at the start of the job body, before the model exists
    probe.start()                  # the window opens (after loading, before the first step)
    with probe.paused(): ...       # not counted: a checkpoint gathers the whole state on the leader
    probe.peak_bytes()             # the high-water mark of the window

* CUDA: the caching allocator's ``max_memory_allocated``, reset when the window opens:
  tensor bytes, which is what the estimate counts (``Estimate.needs_gb`` adds the
  allocator's slack and the CUDA context on top).
* CPU (Linux): the process's resident-set high-water mark (``VmHWM``), reset when the
  window opens by writing 5 to ``/proc/self/clear_refs``, minus the resident set the process
  had when the probe was made (the interpreter and libraries, not the job's tensors). torch
  keeps no statistics for its CPU allocator, and ``tracemalloc`` sees Python's allocator,
  not tensors; ``ru_maxrss`` cannot be reset, so it would report the loading peak (model
  files mapped beside the model) instead of the steps'. The RSS also counts what malloc
  keeps after a free and the model files' mapped pages, so it reads a little above the
  tensor bytes. Elsewhere (no ``/proc``) the CPU peak is unknown (None).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_bytes(key: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return float(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


class PeakMemory:
    """High-water mark of one rank's memory over a window that can be paused; see the module docstring."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.base = 0.0 if self.cuda else _status_bytes("VmRSS")
        self.high = 0.0
        self.open = False

    def _reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            CLEAR_REFS.write_text("5")

    def _read(self) -> float:
        if self.cuda:
            import torch

            return float(torch.cuda.max_memory_allocated(self.device))
        return (_status_bytes("VmHWM") or 0.0) - (self.base or 0.0)

    def start(self) -> None:
        """Open the window: from now on the peak counts."""
        self.high, self.open = 0.0, True
        self._reset()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """What runs inside is not counted (the peak so far is kept)."""
        if not self.open:
            yield
            return
        self.high = max(self.high, self._read())
        try:
            yield
        finally:
            self._reset()

    def peak_bytes(self) -> float | None:
        """The window's peak in bytes; None where it cannot be read (CPU without /proc)."""
        if not self.cuda and self.base is None:
            return None
        return max(self.high, self._read()) if self.open else None


def peak_metrics(prefix: str, peaks: dict[int, float | None]) -> dict[str, float]:
    """``<prefix>/peak_mem_gb`` (the largest rank's, GiB, as ``sweep.memory`` counts) and ``.../rank<r>`` per rank."""
    known = {rank: b / 2**30 for rank, b in peaks.items() if b is not None}
    if not known:
        return {}
    return {f"{prefix}/peak_mem_gb": max(known.values()),
            **{f"{prefix}/peak_mem_gb/rank{r}": v for r, v in sorted(known.items())}}
