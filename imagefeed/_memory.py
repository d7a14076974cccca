"""Peak memory of a trial: its process and its loader workers on the host, and torch's allocations on the device.

The host figure is the trial process's own peak resident set, kept by the
kernel (VmHWM, reset at the start through /proc/self/clear_refs), plus the
peak over samples of its descendants' summed proportional set size (PSS,
/proc/PID/smaps_rollup), taken by a background thread only while there are
descendants. PSS for the workers: forked DataLoader workers share the
parent's pages (torch's libraries alone are hundreds of MiB), and summing
their RSS would count those pages once per worker; their PSS still counts
their share of them, so the sum errs high, never low. The trial process is
not sampled: reading its smaps_rollup (~3 ms, walking every mapping of a
torch process) five times a second cost `fit` 5% of its throughput on the
whole-tensor path (bench/train_throughput.py: 0.929 of the hand-written loop,
0.983 without it). Where /proc cannot be read, RSS or `resource.getrusage`
stands in.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import torch

# Sampling period: reading smaps_rollup of a torch process costs about 3 ms, so 5 samples a second cost
# under 2% of a core; a loader's memory grows over whole batches, far slower than that.
DEFAULT_INTERVAL_S = 0.2
_MIB = 2 ** 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC = Path("/proc")


def _children(pid: int) -> list[int]:
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _process_tree(root: int) -> list[int]:
    tree, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in _children(pid)]
        tree += frontier
    return tree


def _process_bytes(pid: int) -> int:
    try:
        for line in (_PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int((_PROC / str(pid) / "statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0  # the process ended between the listing and the read


def host_tree_mib(pid: int | None = None) -> float:
    """The memory of process `pid` (default: this one) and all its descendants now, in MiB (PSS, else RSS)."""
    root = os.getpid() if pid is None else pid
    if not (_PROC / str(root)).exists():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; a peak, not now
    return sum(_process_bytes(p) for p in _process_tree(root)) / _MIB


def _own_peak_bytes() -> int | None:
    """This process's peak resident set since the last reset (VmHWM), or None where /proc does not say."""
    try:
        for line in (_PROC / "self" / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_own_peak() -> bool:
    """Start this process's VmHWM again from its current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        (_PROC / "self" / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakHostMemory:
    """`with PeakHostMemory() as peak: ...` then `peak.mib`: the peak of the process and its descendants meanwhile.

    For this process (the default `pid`), its own peak comes from the kernel
    and only its descendants are sampled; for another `pid`, or where the
    kernel's peak cannot be reset, the whole tree is sampled.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, pid: int | None = None):
        self.interval_s = interval_s
        self.pid = os.getpid() if pid is None else pid
        self.mib = math.nan
        self._own_from_kernel = False
        self._descendants_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        """Take one sample now; returns it (MiB) and raises the peak if it is higher."""
        if self._own_from_kernel:
            descendants = sum(_process_bytes(p) for p in _process_tree(self.pid)[1:])
            self._descendants_peak = max(self._descendants_peak, descendants)
            own = _own_peak_bytes() or 0
            now = (own + descendants) / _MIB
            peak = (own + self._descendants_peak) / _MIB
        else:
            now = peak = host_tree_mib(self.pid)
        if math.isnan(self.mib) or peak > self.mib:
            self.mib = peak
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._own_from_kernel or _children(self.pid):
                self.sample()

    def __enter__(self) -> PeakHostMemory:
        self._own_from_kernel = self.pid == os.getpid() and _own_peak_bytes() is not None and _reset_own_peak()
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-host-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


def reset_peak_device(device: torch.device) -> None:
    """Start counting the device's peak from here (CUDA only; nothing elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_device_mib(device: torch.device) -> float:
    """The most memory torch allocated on `device` since the last reset, in MiB; NaN off CUDA (not tracked there)."""
    if device.type != "cuda":
        return math.nan
    return torch.cuda.max_memory_allocated(device) / _MIB
