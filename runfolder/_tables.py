"""Reading and writing a run folder's tables and run.json.

During a run, `ResultsTables` appends each finished trial (row and curve) to
the trial log, `trials.jsonl`, one JSON line each: the cost of recording a
trial does not grow with the study, and a crash loses at most a trial whose
line was being written (a torn last line is ignored on reading). The parquet
and CSV tables that people and tools read are materialised from it: after the
first trial, every `materialize_every_s`, and when the run ends or resumes.

Readers (`read_results`, `read_curves`, `read_trials`) see every finished
trial at any time: when the log is newer than the tables, they replay it.
`read_trials` needs only the standard library, so `models.load` works without
pandas; everything else imports pandas on first use.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._atomic import atomic_write_frame, atomic_write_text
from ._layout import RunFolder
from ._ranking import RANKING_COLUMN, rankable, sort_key
from ._rows import CURVE_COLUMNS, STATUSES, curve_rows

# What each reader needs of results.parquet; the report reads with the least.
REPORT_COLUMNS = ("trial_id", "status")
LOAD_COLUMNS = ("trial_id", "status", RANKING_COLUMN, "arch_yaml", "checkpoint")


class RunFolderError(ValueError):
    """A run folder's file is missing, unreadable or lacks what the reader needs; the message names it."""


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ------------------------------------------------------------------ run.json
def read_run_json(run_dir: str | Path) -> dict[str, Any] | None:
    """run.json as a dict; None when the folder has none."""
    path = RunFolder(run_dir).run_json
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path}: not readable JSON: {_first_line(error)}") from None
    if not isinstance(document, dict):
        raise RunFolderError(f"{path}: expected a JSON object at the top level, got {type(document).__name__}")
    return document


def write_run_json(run_dir: str | Path, document: Mapping[str, Any]) -> None:
    """Write run.json atomically."""
    atomic_write_text(RunFolder(run_dir).run_json, json.dumps(document, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ the trial log
def _plain(value: Any) -> Any:
    """JSON for numpy scalars and other values a row may hold."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _log_line(event: Mapping[str, Any]) -> bytes:
    # NaN stays NaN (Python's json writes and reads it), so a row survives the round trip exactly.
    return (json.dumps(event, default=_plain, separators=(",", ":")) + "\n").encode("utf-8")


def replay_log(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(rows by trial id, curves by trial id) from a trial log; a torn last line (a crash mid-write) is ignored."""
    rows: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RunFolderError(f"{path}: cannot be read ({_first_line(error)})") from None
    lines = data.split(b"\n")
    # Everything after the last newline was never finished: the line that a crash cut.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            kind = event["event"]
            if kind == "trial":
                trial = event["row"]["trial_id"]
                rows[trial] = event["row"]
                curves[trial] = event.get("curve") or []
            elif kind == "checkpoints":
                for trial, cell in event["cells"].items():
                    if trial in rows:
                        rows[trial]["checkpoint"] = cell
            elif kind == "forget":
                rows.pop(event["trial"], None)
                curves.pop(event["trial"], None)
            else:
                raise ValueError(f"unknown event {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RunFolderError(f"{path}:{number}: not a trial-log line ({_first_line(error)}); the lines "
                                 f"before it are intact") from None
    return rows, curves


def _log_is_newer(log: Path, table: Path) -> bool:
    """True when the log holds trials that the materialised table may lack."""
    if not log.is_file():
        return False
    return not table.is_file() or log.stat().st_mtime_ns > table.stat().st_mtime_ns


def _frame(records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Any:
    import pandas as pd

    return pd.DataFrame(records, columns=list(columns) if columns is not None else None)


def _sorted_rows(rows: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [rows[trial] for trial in sorted(rows)]


# ------------------------------------------------------------ pandas readers
def _read_frame(path: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as error:  # pyarrow and pandas raise several unrelated types for a bad file
        kind = "parquet" if path.suffix == ".parquet" else "CSV"
        raise RunFolderError(f"{path}: not a readable {kind} file: {_first_line(error)}") from None


def _require(frame: Any, path: Path, required: Iterable[str]) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing and len(frame.columns):
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}; the run-folder format "
                             f"(docs/DESIGN.md) needs {', '.join(required)} here")


def read_results(run_dir: str | Path, required: Iterable[str] = REPORT_COLUMNS) -> Any:
    """results.parquet (else results.csv) as a DataFrame; RunFolderError when missing, unreadable or incomplete."""
    folder = RunFolder(run_dir)
    path = folder.results if folder.results.is_file() else folder.results_csv
    if _log_is_newer(folder.trials_log, path):
        path = folder.trials_log
        frame = _frame(_sorted_rows(replay_log(path)[0]))
    elif not path.is_file():
        raise RunFolderError(f"{folder.results}: missing; the runner writes it after the first finished "
                             f"trial, so {folder.path} holds no results yet")
    else:
        frame = _read_frame(path)
    _require(frame, path, tuple(required))
    if "status" in frame.columns:
        unknown = sorted({str(status) for status in frame["status"].dropna().unique()} - set(STATUSES))
        if unknown or frame["status"].isna().any():
            given = unknown[0] if unknown else "null"
            raise RunFolderError(f"{path}: field status: got {given!r}; allowed: {', '.join(STATUSES)}")
    return frame


def read_curves(run_dir: str | Path) -> Any | None:
    """curves.parquet as a DataFrame; None when the folder has none."""
    folder = RunFolder(run_dir)
    path = folder.curves
    if _log_is_newer(folder.trials_log, path):
        curves = replay_log(folder.trials_log)[1]
        return _frame([point for trial in sorted(curves) for point in curves[trial]], CURVE_COLUMNS)
    if not path.is_file():
        return None
    frame = _read_frame(path)
    _require(frame, path, ("trial_id", "epoch", "val_acc"))
    return frame


def read_retrain(run_dir: str | Path) -> Any | None:
    """retrain.parquet as a DataFrame; None when the folder has none."""
    path = RunFolder(run_dir).retrain
    if not path.is_file():
        return None
    frame = _read_frame(path)
    _require(frame, path, ("arch_key", "test_acc"))
    return frame


def write_retrain(run_dir: str | Path, frame: Any) -> None:
    """Rewrite retrain.parquet and retrain.csv atomically."""
    folder = RunFolder(run_dir)
    atomic_write_frame(frame, folder.retrain)
    atomic_write_frame(frame, folder.retrain_csv)


# ------------------------------------------------------- a standard-library reader
@dataclass(frozen=True)
class TrialRecord:
    """What `models.load` needs from one results row."""

    trial_id: str
    number: int | None
    status: str
    val_acc_best: float
    test_acc: float
    arch_yaml: str
    checkpoint: str  # relative to the run folder; "" when the weights were not kept
    error: str


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _rows_from_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _rows_from_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise RunFolderError(f"{path}: reading it needs pyarrow (pip install pyarrow), and the run "
                             f"folder has no {path.with_suffix('.csv').name} to read instead") from None
    table = parquet.read_table(path)
    return list(table.column_names), table.to_pylist()


def _rows_from_log(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    rows = _sorted_rows(replay_log(path)[0])
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return columns, rows


def read_trials(run_dir: str | Path) -> list[TrialRecord]:
    """Every row of the results table as a TrialRecord (results.csv through the csv module, else parquet)."""
    folder = RunFolder(run_dir)
    path, reader = folder.results_csv, _rows_from_csv
    if not path.is_file():
        path, reader = folder.results, _rows_from_parquet
    if _log_is_newer(folder.trials_log, path):
        path, reader = folder.trials_log, _rows_from_log
    try:
        columns, rows = reader(path)
    except RunFolderError:
        raise
    except Exception as error:  # csv.Error, OSError, ArrowInvalid, UnicodeDecodeError
        raise RunFolderError(f"{path}: cannot be read as a results table ({_first_line(error)})") from None
    missing = [c for c in LOAD_COLUMNS if c not in columns]
    if missing and rows:
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}; a results table "
                             f"needs {', '.join(LOAD_COLUMNS)}")
    records = []
    for row in rows:
        number = _number(row.get("number"))
        records.append(TrialRecord(
            trial_id=_text(row.get("trial_id")), number=None if math.isnan(number) else int(number),
            status=_text(row.get("status")), val_acc_best=_number(row.get(RANKING_COLUMN)),
            test_acc=_number(row.get("test_acc")), arch_yaml=_text(row.get("arch_yaml")),
            checkpoint=_text(row.get("checkpoint")).strip(), error=_text(row.get("error")),
        ))
    return records


# ------------------------------------------------------------------ the writer
class ResultsTables:
    """A run's results and curves: each finished trial appended to the log at once, the tables materialised from it.

    Recording a trial costs the same at trial 10,000 as at trial 10: one line
    appended, the ranking kept sorted by insertion, no table rewritten.
    """

    def __init__(self, run_dir: str | Path, materialize_every_s: float = 60.0) -> None:
        self.folder = RunFolder(run_dir)
        self.materialize_every_s = materialize_every_s
        self.rows: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self._order: list[tuple[tuple[float, str], str]] = []  # (sort key, trial id) of rankable rows, best first
        self._checkpoint_cells: dict[str, str] = {}
        self._kept: set[str] = set()  # trials whose checkpoint cell is not empty
        self._materialized_at: float | None = None
        self._unmaterialized = False

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def best(self) -> dict[str, Any] | None:
        """The top-ranked row, without a scan."""
        return self.rows[self._order[0][1]] if self._order else None

    @classmethod
    def load(cls, run_dir: str | Path, materialize_every_s: float = 60.0) -> "ResultsTables":
        """The trials an earlier (possibly interrupted) run recorded: from its log, else from its tables."""
        tables = cls(run_dir, materialize_every_s)
        folder = tables.folder
        if folder.trials_log.is_file():
            rows, curves = replay_log(folder.trials_log)
            tables._repair_log()
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

    def _repair_log(self) -> None:
        """Cut a torn last line (a crash mid-append) so the next line starts clean."""
        path = self.folder.trials_log
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def _append(self, event: Mapping[str, Any]) -> None:
        self.folder.path.mkdir(parents=True, exist_ok=True)
        # One write of one whole line, flushed: a killed driver leaves every earlier line intact.
        with self.folder.trials_log.open("ab") as handle:
            handle.write(_log_line(event))
        self._unmaterialized = True

    def _remember(self, row: dict[str, Any], curve: list[dict[str, Any]]) -> None:
        trial = row["trial_id"]
        if trial in self.rows:
            self._unrank(trial)
        self.rows[trial] = row
        self.curves[trial] = curve
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
        self.curves.pop(trial, None)
        self._checkpoint_cells.pop(trial, None)
        self._kept.discard(trial)
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
        if not changed:
            return
        for trial, cell in changed.items():
            self.rows[trial]["checkpoint"] = cell
            self._checkpoint_cells[trial] = cell
            if cell:
                self._kept.add(trial)
            else:
                self._kept.discard(trial)
        self._append({"event": "checkpoints", "cells": changed})

    def ranked(self) -> list[dict[str, Any]]:
        """Rows of the rankable trials, best first (the one ranking rule), kept sorted as trials arrive."""
        return [self.rows[trial] for _, trial in self._order]

    def top(self, k: int) -> list[dict[str, Any]]:
        """The k best rows (all rankable rows for k < 0)."""
        order = self._order if k < 0 else self._order[:k]
        return [self.rows[trial] for _, trial in order]

    def results_frame(self) -> Any:
        """Every trial, sorted by trial id."""
        return _frame(_sorted_rows(self.rows))

    def curves_frame(self) -> Any:
        """Every epoch of every trial."""
        return _frame([p for trial in sorted(self.curves) for p in self.curves[trial]], CURVE_COLUMNS)

    def materialize_if_due(self) -> None:
        """Materialise after the first trial and then at most every `materialize_every_s`."""
        now = time.monotonic()
        if self._materialized_at is None or now - self._materialized_at >= self.materialize_every_s:
            self.materialize()

    def materialize(self) -> None:
        """Rewrite results and curves, parquet and CSV, atomically, from the rows in memory (= the log)."""
        results = self.results_frame()
        curves = self.curves_frame()
        for frame, parquet, text in ((results, self.folder.results, self.folder.results_csv),
                                     (curves, self.folder.curves, self.folder.curves_csv)):
            atomic_write_frame(frame, parquet)
            atomic_write_frame(frame, text)
        self._materialized_at = time.monotonic()
        self._unmaterialized = False

    def close(self) -> None:
        """Materialise whatever the tables do not show yet (at the end of a run or an attempt)."""
        if self._unmaterialized or not self.folder.results.is_file():
            self.materialize()
