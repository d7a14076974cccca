"""The report while a study runs: report.html rebuilt in the background after trials finish.

A build reads the run folder (the trial log is written before any listener
hears of a trial) and replaces report.html atomically, so a browser that
reloads mid-build sees the previous page whole. Builds run in one background
thread of the driver, one at a time:

- the first finished trial always starts one, later ones at most once per
  `report.live_every_s` (counted from the start of the previous build);
- a trial that finishes while a build runs, when a build is due, gets one more
  build right after it (coalesced: many such trials make one build);
- `close` waits for the build in flight, so the runner's final build (the page
  without the banner and the refresh) is the last to write report.html.

A thread, not a subprocess: a build in a warm process costs about a second of
CPU, a fresh `python -m reports.build` about five (bench/RESULTS.md, "Report
build at scale"), and the driver mostly waits on Ray, so the build rarely
holds the interpreter when Tune's loop needs it. Nothing here waits for a
build on a trial's path: `trial` only starts or flags one.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ._recorder import TrialListener

# The live page reloads itself this often, at least: a study that rebuilds after
# every trial must not make the browser reload faster than a person reads.
MIN_REFRESH_S = 10


def refresh_seconds(live_every_s: float) -> int:
    """How often the live page reloads itself: as often as it may change, but not under MIN_REFRESH_S."""
    return max(MIN_REFRESH_S, int(round(live_every_s)))


class LiveReport(TrialListener):
    """Rebuilds report.html in a background thread as trials finish: the first at once, then at most every `every_s`."""

    def __init__(self, run_dir: Path, every_s: float, out: Any = sys.stdout,
                 build: Callable[[], Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = Path(run_dir)
        self.every_s = float(every_s)
        self.out = out
        self._build = build or self._build_live_page
        self._clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._pending = False   # a build fell due while one ran: run one more after it
        self._closed = False
        self._last_start: float | None = None
        self.builds = 0          # finished builds, failed ones included
        self.build_seconds = 0.0  # their wall time in the background thread
        self.failures = 0

    # Tune pickles its callbacks, and so the recorder and its listeners, into the experiment state:
    # the thread and its lock stay with this driver.
    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_thread": None, "_running": False}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def trial(self, row: dict[str, Any], curve: list[dict[str, Any]]) -> None:
        """A trial finished: start a build when one is due, or flag one for when the running build ends."""
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            if self._last_start is not None and now - self._last_start < self.every_s:
                return
            if self._running:
                self._pending = True
                return
            self._running, self._last_start = True, now
            self._thread = threading.Thread(target=self._work, name="resnas-live-report", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Start no more builds and wait for the one in flight."""
        with self._lock:
            self._closed, self._pending = True, False
            thread = self._thread
        if thread is not None:
            thread.join()

    def summary(self) -> str:
        """One line for the end of the run: how many live builds, and their time in the background."""
        failed = f", {self.failures} failed" if self.failures else ""
        return (f"live report: {self.builds} build(s) in the background, {self.build_seconds:.1f} s in all{failed} "
                f"(report.live_every_s = {self.every_s:g})")

    def _work(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                self._build()
            except Exception as error:  # the tables are safe on disk; a report bug must not stop the study
                self.failures += 1
                if self.failures == 1:
                    print(f"live report failed ({type(error).__name__}: {error}); the study goes on, and the "
                          "final report is built at the end", file=self.out, flush=True)
            self.build_seconds += time.perf_counter() - started
            self.builds += 1
            with self._lock:
                if not self._pending or self._closed:
                    self._running = False
                    return
                self._pending, self._last_start = False, self._clock()

    def _build_live_page(self) -> None:
        # Imported on the first build, in this thread: the report's imports (pandas, matplotlib,
        # scipy) then never delay the study's start.
        from reports import build_report

        build_report(self.run_dir, live_refresh_s=refresh_seconds(self.every_s))
