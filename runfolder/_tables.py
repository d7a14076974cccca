"""The writer of a run's results and curves: the trial log appended, the tables materialised from it.

During a run, `ResultsTables` appends each finished trial (row and curve) to
the trial log, `trials.jsonl`, one JSON line each: the cost of recording a
trial does not grow with the study, and a crash loses at most a trial whose
line was being written (a torn last line is ignored on reading). The parquet
and CSV tables that people and tools read are materialised from it: after the
first trial, every `materialize_every_s` (in a background thread), and when
the run ends or resumes. Each materialisation then appends a marker line
naming how much of the log the tables hold.

Readers (`read_results`, `read_curves`, `read_trials`) see every finished
trial at any time: they read the tables and apply the log's lines after the
last marker (a minute of trials, not the whole study); a log without markers
is replayed whole. `read_trials` needs only the standard library, so
`models.load` works without pandas; everything else imports pandas on first
use. The readers live in `_frames` (pandas) and `_records` (standard library),
the log in `_log`, what a materialisation writes in `_snapshot`.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ._frames import read_curves, read_results
from ._layout import RunFolder
from ._log import MATERIALIZED_EVENT, _log_line, _tables_hold_the_log, replay_log
from ._ranking import RANKING_COLUMN, rankable, sort_key
from ._rows import curve_rows
from ._snapshot import _Curves, _ResultColumns, _Snapshot, _write_snapshot
from ._untrusted import RunFolderError, _first_line


class ResultsTables:
    """A run's results and curves: each finished trial appended to the log at once, the tables materialised from it.

    Recording a trial costs the same at trial 10,000 as at trial 10: one line
    appended, the ranking kept sorted by insertion, no table rewritten. The
    tables are written after the first trial in the driver, then every
    `materialize_every_s` in a background thread (pyarrow writes them without
    holding the interpreter), and at `close` in the driver again. A
    materialisation copies the rows as columns and the packed curves, which
    costs the driver a few milliseconds at 10,000 trials; a trial finishing
    meanwhile is appended to the log as always.
    """

    def __init__(self, run_dir: str | Path, materialize_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = RunFolder(run_dir)
        self.materialize_every_s = materialize_every_s
        self._clock = clock  # seconds, for the materialisation schedule; a bench simulates the trials' arrival
        self.rows: dict[str, dict[str, Any]] = {}
        self.curves = _Curves()
        self._columns = _ResultColumns()
        self._order: list[tuple[tuple[float, str], str]] = []  # (sort key, trial id) of rankable rows, best first
        self._checkpoint_cells: dict[str, str] = {}
        self._kept: set[str] = set()  # trials whose checkpoint cell is not empty
        self._lock = threading.Lock()  # appends to the log: the driver's trials and a background write's marker
        self._log_bytes = self._log_size()
        self._held_by_tables: int | None = None  # the log length the tables on disk hold, when they hold all of it
        self._materialized_at: float | None = None
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its callbacks (the recorder holds these tables) into the experiment folder.
        state = self.__dict__.copy()
        state.update(_lock=None, _writer=None, _writer_error=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def best(self) -> dict[str, Any] | None:
        """The top-ranked row, without a scan."""
        return self.rows[self._order[0][1]] if self._order else None

    @classmethod
    def load(cls, run_dir: str | Path, materialize_every_s: float = 60.0,
             clock: Callable[[], float] = time.monotonic) -> "ResultsTables":
        """The trials an earlier (possibly interrupted) run recorded: from its log, else from its tables."""
        tables = cls(run_dir, materialize_every_s, clock)
        folder = tables.folder.checked()
        if folder.trials_log.is_file():
            rows, curves = replay_log(folder.trials_log)
            tables._repair_log()
            if folder.results.is_file() and _tables_hold_the_log(folder.trials_log):
                tables._held_by_tables = tables._log_bytes
        else:  # a run folder written before the log existed: the tables are the record
            rows = {row["trial_id"]: row for row in read_results(run_dir).to_dict("records")} \
                if folder.has_results() else {}
            frame = read_curves(run_dir)
            curves = {}
            for point in ([] if frame is None else frame.to_dict("records")):
                if point["trial_id"] in rows:
                    curves.setdefault(point["trial_id"], []).append(point)
            for trial, row in rows.items():  # the log starts as a copy of the tables
                tables._append({"event": "trial", "row": row, "curve": curves.get(trial, [])})
        for trial, row in rows.items():
            tables._remember(row, curves.get(trial, []))
        return tables

    def _log_size(self) -> int:
        try:
            return self.folder.trials_log.stat().st_size
        except FileNotFoundError:
            return 0

    def _repair_log(self) -> None:
        """Cut a torn last line (a crash mid-append) so the next line starts clean."""
        path = self.folder.trials_log
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
        self._log_bytes = self._log_size()

    def _append(self, event: Mapping[str, Any]) -> None:
        line = _log_line(event)
        with self._lock:
            self._append_locked(line)

    def _append_locked(self, line: bytes) -> None:
        self.folder.path.mkdir(parents=True, exist_ok=True)
        # One write of one whole line, flushed: a killed driver leaves every earlier line intact.
        with self.folder.trials_log.open("ab") as handle:
            handle.write(line)
        self._log_bytes += len(line)

    def _remember(self, row: Mapping[str, Any], curve: Iterable[Mapping[str, Any]]) -> None:
        # Column names interned: 10,000 rows share one copy of each name instead of holding their own.
        row = {sys.intern(str(name)): value for name, value in row.items()}
        trial = row["trial_id"]
        if trial in self.rows:
            self._unrank(trial)
        self.rows[trial] = row
        self.curves.put(trial, curve)
        self._columns.put(row)
        self._checkpoint_cells[trial] = str(row.get("checkpoint") or "")
        if self._checkpoint_cells[trial]:
            self._kept.add(trial)
        if rankable(row.get("status"), row.get(RANKING_COLUMN)):
            bisect.insort(self._order, (sort_key(trial, row[RANKING_COLUMN]), trial))

    def _unrank(self, trial: str) -> None:
        row = self.rows[trial]
        if rankable(row.get("status"), row.get(RANKING_COLUMN)):
            entry = (sort_key(trial, row[RANKING_COLUMN]), trial)
            index = bisect.bisect_left(self._order, entry)
            if index < len(self._order) and self._order[index] == entry:
                del self._order[index]

    def forget(self, trial: str) -> None:
        """Drop a trial (one an interrupted run left half-recorded) before it runs again."""
        if trial not in self.rows:
            return
        self._unrank(trial)
        del self.rows[trial]
        self.curves.discard(trial)
        self._checkpoint_cells.pop(trial, None)
        self._kept.discard(trial)
        self._columns = _ResultColumns()  # rare (on resume): the columns are rebuilt without the row
        for row in self.rows.values():
            self._columns.put(row)
        self._append({"event": "forget", "trial": trial})

    def add_trial(self, row: Mapping[str, Any], curve: Iterable[Mapping[str, Any]] = (), flush: bool = True) -> None:
        """Record one finished trial: durable in the log at once; the tables follow on schedule (`flush=False`: never here)."""
        row = dict(row)
        points = curve_rows(row["trial_id"], curve)
        self._append({"event": "trial", "row": row, "curve": points})
        self._remember(row, points)
        if flush:
            self.materialize_if_due()

    def set_checkpoints(self, kept: Mapping[str, str]) -> None:
        """Point each row at its kept checkpoint folder (empty where weights were dropped); logs only the changes."""
        changed = {trial: kept.get(trial, "") for trial in set(kept) | self._kept
                   if trial in self.rows and self._checkpoint_cells.get(trial, "") != kept.get(trial, "")}
        self._set_cells(changed)

    def keep_checkpoint(self, trial: str, cell: str) -> None:
        """Point one row at its checkpoint folder, leaving every other row's cell as it is."""
        if trial in self.rows and self._checkpoint_cells.get(trial, "") != cell:
            self._set_cells({trial: cell})

    def _set_cells(self, changed: Mapping[str, str]) -> None:
        if not changed:
            return
        for trial, cell in changed.items():
            self.rows[trial]["checkpoint"] = cell
            self._columns.set_cell(self._columns.position[trial], "checkpoint", cell)
            self._checkpoint_cells[trial] = cell
            if cell:
                self._kept.add(trial)
            else:
                self._kept.discard(trial)
        self._append({"event": "checkpoints", "cells": dict(changed)})

    def ranked(self) -> list[dict[str, Any]]:
        """Rows of the rankable trials, best first (the one ranking rule), kept sorted as trials arrive."""
        return [self.rows[trial] for _, trial in self._order]

    def top(self, k: int) -> list[dict[str, Any]]:
        """The k best rows (all rankable rows for k < 0)."""
        order = self._order if k < 0 else self._order[:k]
        return [self.rows[trial] for _, trial in order]

    def results_frame(self) -> Any:
        """Every trial, sorted by trial id."""
        return self._snapshot().results_table().to_pandas()

    def curves_frame(self) -> Any:
        """Every epoch of every trial."""
        return self._snapshot().curves_table().to_pandas()

    def _snapshot(self) -> _Snapshot:
        """Copies of what the tables show now (lists of references: milliseconds at 10,000 trials)."""
        ids = self._columns.columns.get("trial_id", [])
        trials = sorted(self.curves)
        return _Snapshot(columns={name: list(values) for name, values in self._columns.columns.items()},
                         order=sorted(range(len(ids)), key=ids.__getitem__), curve_trials=trials,
                         curves=[self.curves.packed(trial) for trial in trials], log_bytes=self._log_bytes)

    def materialize_if_due(self) -> None:
        """Materialise after the first trial (here) and then at most every `materialize_every_s` (in the background)."""
        if self._writer_error is not None:
            error, self._writer_error = self._writer_error, None
            raise RunFolderError(f"{self.folder.path}: writing the tables failed ({_first_line(error)}); every "
                                 f"finished trial is in {self.folder.trials_log.name}") from error
        if self._materialized_at is None:
            self.materialize()
        elif (self._clock() - self._materialized_at >= self.materialize_every_s
              and (self._writer is None or not self._writer.is_alive())):
            snapshot = self._snapshot()
            self._materialized_at = self._clock()
            self._writer = threading.Thread(target=self._write_in_background, args=(snapshot,),
                                            name="resnas-tables", daemon=True)
            self._writer.start()

    def _write_in_background(self, snapshot: _Snapshot) -> None:
        try:
            _write_snapshot(self.folder, snapshot)
            self._mark_written(snapshot.log_bytes)
        except BaseException as error:  # raised in the driver at the next trial; the log holds every trial
            self._writer_error = error

    def _mark_written(self, log_bytes: int) -> None:
        """Append the marker that tells readers the tables hold the log's first `log_bytes` bytes."""
        with self._lock:
            everything = self._log_bytes == log_bytes  # no trial arrived while the tables were written
            self._append_locked(_log_line({"event": MATERIALIZED_EVENT, "log_bytes": log_bytes}))
            self._held_by_tables = self._log_bytes if everything else None

    def _wait_for_writer(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def materialize(self) -> None:
        """Rewrite results and curves, parquet and CSV, atomically, from the rows in memory (= the log), here, now."""
        self._wait_for_writer()
        snapshot = self._snapshot()
        self._materialized_at = self._clock()
        _write_snapshot(self.folder, snapshot)
        self._mark_written(snapshot.log_bytes)

    def close(self) -> None:
        """Materialise whatever the tables do not show yet (at the end of a run or an attempt)."""
        self._wait_for_writer()
        self._writer_error = None  # the write below tries again, and raises if the cause remains
        if self._held_by_tables != self._log_bytes or not self.folder.results.is_file():
            self.materialize()
