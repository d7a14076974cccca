"""Reading and writing a run folder's tables and run.json.

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
use.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import os
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ._atomic import atomic_write_frame, atomic_write_text, atomic_write_with
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


def _read_mapping(path: Path, expected: str, kind: str = "JSON") -> dict[str, Any] | None:
    """The mapping a JSON (or YAML, read safely) file holds; None when there is no such file; RunFolderError
    (saying `expected`) when it is unreadable or not a mapping."""
    if not path.is_file():
        return None
    if kind == "YAML":
        import yaml

        parse, malformed = yaml.safe_load, yaml.YAMLError
    else:
        parse, malformed = json.loads, json.JSONDecodeError
    try:
        document = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, malformed) as error:
        raise RunFolderError(f"{path}: not readable {kind}: {_first_line(error)}") from None
    if not isinstance(document, dict):
        raise RunFolderError(f"{path}: {expected}, got {type(document).__name__}")
    return document


# ------------------------------------------------------------------ run.json
def read_run_json(run_dir: str | Path) -> dict[str, Any] | None:
    """run.json as a dict; None when the folder has none."""
    return _read_mapping(RunFolder(run_dir).run_json, "expected a JSON object at the top level")


def read_study_yaml(run_dir: str | Path) -> dict[str, Any] | None:
    """study.yaml (the study as run) as a plain dict of sections; None when the folder has none."""
    return _read_mapping(RunFolder(run_dir).study_yaml, "expected a mapping of study sections", kind="YAML")


def write_run_json(run_dir: str | Path, document: Mapping[str, Any]) -> None:
    """Write run.json atomically."""
    atomic_write_text(RunFolder(run_dir).run_json, json.dumps(document, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ plans.json
def write_plans(run_dir: str | Path, plans: Iterable[Mapping[str, Any]]) -> None:
    """Write plans.json atomically: the trials of a run that samples none, each as `TrialPlan.to_dict()`, in order."""
    atomic_write_text(RunFolder(run_dir).plans, json.dumps({"plans": list(plans)}, indent=1) + "\n")


def read_plans(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The plans plans.json holds, in order; None when the folder has none."""
    path = RunFolder(run_dir).plans
    shape = 'expected {"plans": [one object per trial, ...]}'
    document = _read_mapping(path, shape)
    if document is None:
        return None
    plans = document.get("plans")
    if not isinstance(plans, list) or not all(isinstance(plan, dict) for plan in plans):
        raise RunFolderError(f"{path}: {shape}")
    return plans


# ------------------------------------------------------------------ the trial log
# The line a materialisation appends once the tables are written: {"event":"materialized","log_bytes":N}
# says that every table on disk holds at least the log's first N bytes.
MATERIALIZED_EVENT = "materialized"
_MARKER_START = b'{"event":"' + MATERIALIZED_EVENT.encode() + b'"'
_SCAN_BYTES = 1 << 20  # the log is searched backwards for the last marker this many bytes at a time


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and other values a row may hold."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _log_line(event: Mapping[str, Any]) -> bytes:
    # NaN stays NaN (Python's json writes and reads it), so a row survives the round trip exactly.
    return (json.dumps(event, default=_plain, separators=(",", ":")) + "\n").encode("utf-8")


class _Replay:
    """Log events applied in order: rows and curves by trial id, and, for a replay of the log's tail only,
    what the tail does to trials it does not hold (`gone`: forgotten; `cells`: new checkpoint cells)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self.gone: set[str] = set()
        self.cells: dict[str, str] = {}

    def apply(self, event: Mapping[str, Any]) -> None:
        kind = event["event"]
        if kind == "trial":
            trial = event["row"]["trial_id"]
            self.rows[trial] = event["row"]
            self.curves[trial] = event.get("curve") or []
            self.gone.discard(trial)
            self.cells.pop(trial, None)
        elif kind == "checkpoints":
            for trial, cell in event["cells"].items():
                if trial in self.rows:
                    self.rows[trial]["checkpoint"] = cell
                elif trial not in self.gone:
                    self.cells[trial] = cell
        elif kind == "forget":
            self.rows.pop(event["trial"], None)
            self.curves.pop(event["trial"], None)
            self.gone.add(event["trial"])
            self.cells.pop(event["trial"], None)
        elif kind != MATERIALIZED_EVENT:
            raise ValueError(f"unknown event {kind!r}")

    @property
    def changes_anything(self) -> bool:
        return bool(self.rows or self.gone or self.cells)

    def replaced(self) -> set[str]:
        """Trials whose rows in a table written before this tail are out of date."""
        return set(self.rows) | self.gone


def _replay_bytes(data: bytes, path: Path, replay: _Replay) -> None:
    # Everything after the last newline was never finished: the line that a crash cut.
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            replay.apply(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RunFolderError(f"{path}:{number}: not a trial-log line ({_first_line(error)}); the lines "
                                 f"before it are intact") from None


def replay_log(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(rows by trial id, curves by trial id) from a trial log; a torn last line (a crash mid-write) is ignored."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RunFolderError(f"{path}: cannot be read ({_first_line(error)})") from None
    replay = _Replay()
    _replay_bytes(data, path, replay)
    return replay.rows, replay.curves


@dataclass(frozen=True)
class _Marker:
    log_bytes: int  # the tables hold at least the log up to here
    start: int      # where the marker's line starts
    end: int        # where it ends (after its newline)


def _last_marker(log: Path) -> _Marker | None:
    """The log's last materialisation marker, searched from the end; None where it has none."""
    try:
        with log.open("rb") as handle:
            size = position = handle.seek(0, os.SEEK_END)
            following = b""  # the first bytes after the chunk in hand: a marker may straddle two chunks
            while position > 0:
                start = max(0, position - _SCAN_BYTES)
                handle.seek(start)
                chunk = handle.read(position - start) + following
                at = chunk.rfind(b"\n" + _MARKER_START) + 1
                if at == 0 and start == 0 and chunk.startswith(_MARKER_START):
                    at = 0
                elif at == 0:
                    following, position = chunk[:len(_MARKER_START) + 1], start
                    continue
                handle.seek(start + at)
                line = handle.readline()
                if not line.endswith(b"\n"):
                    return None
                event = json.loads(line)
                log_bytes = event.get("log_bytes") if isinstance(event, dict) else None
                if not isinstance(log_bytes, int) or not 0 <= log_bytes <= start + at:
                    return None
                return _Marker(log_bytes, start + at, min(size, start + at + len(line)))
    except (OSError, ValueError):
        return None
    return None


def _log_tail(log: Path) -> _Replay | None:
    """The log's events after what the tables hold (by its last marker), replayed; None where it cannot tell.

    A reader takes the tables and applies these on top. Events that the
    tables already hold (a later write may have renamed its tables before
    appending its marker) come again and set what they set before, so the
    result is the whole log's. None (read the whole log instead) for a log
    without markers, or one whose marker does not point at a line's start.
    """
    marker = _last_marker(log)
    if marker is None:
        return None
    try:
        with log.open("rb") as handle:
            if marker.log_bytes:
                handle.seek(marker.log_bytes - 1)
                if handle.read(1) != b"\n":
                    return None
            data = handle.read()
        replay = _Replay()
        _replay_bytes(data, log, replay)
    except (OSError, RunFolderError):  # the whole log is read instead, and names the line at fault
        return None
    return replay


def _tables_hold_the_log(log: Path) -> bool:
    """True when the log's last line is a marker that a materialisation appended right after the lines it wrote."""
    marker = _last_marker(log)
    return marker is not None and marker.log_bytes == marker.start and marker.end == log.stat().st_size


def _frame(records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Any:
    import pandas as pd

    return pd.DataFrame(records, columns=list(columns) if columns is not None else None)


def _sorted_rows(rows: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [rows[trial] for trial in sorted(rows)]


# ------------------------------------------------------------ pandas readers
def _read_frame(path: Path) -> Any:
    import pandas as pd

    try:
        # One open file for the whole read: the writer replaces a table by renaming a new file over it, and
        # pyarrow given a path opens it twice (footer, then pages), so a rename between the two would pair one
        # file's footer with the other's pages. An open handle keeps reading the file it opened.
        with path.open("rb") as handle:
            return pd.read_parquet(handle) if path.suffix == ".parquet" else pd.read_csv(handle)
    except Exception as error:  # pyarrow and pandas raise several unrelated types for a bad file
        kind = "parquet" if path.suffix == ".parquet" else "CSV"
        raise RunFolderError(f"{path}: not a readable {kind} file: {_first_line(error)}") from None


def _require(frame: Any, path: Path, required: Iterable[str]) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing and len(frame.columns):
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}; the run-folder format "
                             f"(docs/DESIGN.md) needs {', '.join(required)} here")


def _status_checked(frame: Any, path: Path) -> Any:
    if "status" in frame.columns:
        unknown = sorted({str(status) for status in frame["status"].dropna().unique()} - set(STATUSES))
        if unknown or frame["status"].isna().any():
            given = unknown[0] if unknown else "null"
            raise RunFolderError(f"{path}: field status: got {given!r}; allowed: {', '.join(STATUSES)}")
    return frame


def _with_tail(frame: Any, tail: _Replay, records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Any:
    """A table read from disk, brought up to date: rows the log's tail replaced or forgot swapped for `records`."""
    import pandas as pd

    if not tail.changes_anything:
        return frame
    if "trial_id" in frame.columns:
        frame = frame[~frame["trial_id"].isin(tail.replaced())]
        if tail.cells and "checkpoint" in frame.columns:
            cells = frame["trial_id"].map(tail.cells)
            frame = frame.assign(checkpoint=cells.where(cells.notna(), frame["checkpoint"].astype(object)))
    else:  # the tables of a run that had no trial yet
        frame = frame.iloc[0:0]
    added = _frame(records, columns)
    frame = pd.concat([frame, added], ignore_index=True) if len(frame) and len(added) else \
        (frame if len(frame) else added)
    return frame.sort_values("trial_id", kind="stable", ignore_index=True) if len(frame) else frame


def read_results(run_dir: str | Path, required: Iterable[str] = REPORT_COLUMNS) -> Any:
    """Every finished trial's row as a DataFrame, by trial id; RunFolderError when missing, unreadable or incomplete.

    From results.parquet (else results.csv) and the trial log's lines after
    what that table holds; from the whole log where it has no marker.
    """
    folder = RunFolder(run_dir)
    path = folder.results if folder.results.is_file() else folder.results_csv
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        path = folder.trials_log
        frame = _frame(_sorted_rows(replay_log(path)[0]))
    elif not path.is_file():
        raise RunFolderError(f"{folder.results}: missing; the runner writes it after the first finished "
                             f"trial, so {folder.path} holds no results yet")
    else:
        frame = _read_frame(path)
        _require(frame, path, tuple(required))
        _status_checked(frame, path)
        if tail is not None:
            path = folder.trials_log
            frame = _with_tail(frame, tail, _sorted_rows(tail.rows))
    _require(frame, path, tuple(required))
    return _status_checked(frame, path)


def read_curves(run_dir: str | Path) -> Any | None:
    """Every epoch of every finished trial as a DataFrame (curves.parquet and the log after it); None when none."""
    folder = RunFolder(run_dir)
    path = folder.curves
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        curves = replay_log(folder.trials_log)[1]
        return _frame([point for trial in sorted(curves) for point in curves[trial]], CURVE_COLUMNS)
    if not path.is_file():
        return None
    frame = _read_frame(path)
    _require(frame, path, ("trial_id", "epoch", "val_acc"))
    if tail is not None:
        frame = _with_tail(frame, tail, [p for trial in sorted(tail.curves) for p in tail.curves[trial]],
                           CURVE_COLUMNS)
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
    with path.open("rb") as handle:  # one open file for the whole read (see _read_frame)
        table = parquet.read_table(handle)
    return list(table.column_names), table.to_pylist()


def _rows_from_log(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    rows = _sorted_rows(replay_log(path)[0])
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return columns, rows


def _rows_with_tail(columns: list[str], rows: list[dict[str, Any]],
                    tail: _Replay) -> tuple[list[str], list[dict[str, Any]]]:
    """`_with_tail` for rows as dicts."""
    replaced = tail.replaced()
    kept = [row for row in rows if row.get("trial_id") not in replaced]
    for row in kept:
        if row.get("trial_id") in tail.cells:
            row["checkpoint"] = tail.cells[row["trial_id"]]
    added = list(tail.rows.values())
    columns = list(dict.fromkeys([*columns, *(column for row in added for column in row)]))
    return columns, sorted(kept + added, key=lambda row: str(row.get("trial_id")))


def read_trials(run_dir: str | Path) -> list[TrialRecord]:
    """Every finished trial as a TrialRecord: results.csv read by the csv module (else parquet), and the log after."""
    folder = RunFolder(run_dir)
    path, reader = folder.results_csv, _rows_from_csv
    if not path.is_file():
        path, reader = folder.results, _rows_from_parquet
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        path, reader = folder.trials_log, _rows_from_log
    try:
        columns, rows = reader(path)
    except RunFolderError:
        raise
    except Exception as error:  # csv.Error, OSError, ArrowInvalid, UnicodeDecodeError
        raise RunFolderError(f"{path}: cannot be read as a results table ({_first_line(error)})") from None
    if tail is not None and tail.changes_anything:
        columns, rows = _rows_with_tail(columns, rows, tail)
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
_CURVE_VALUES = CURVE_COLUMNS[1:]  # what a curve stores per epoch besides the trial id


def _as_float(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


class _Curves(Mapping[str, list[dict[str, Any]]]):
    """Every trial's curve, packed as six floats per epoch; reads back as curve rows (missing values as None).

    A 50-epoch curve packed takes 2.4 kB, as dicts about 25 kB: at 10,000
    trials that is 24 MB of the driver's memory instead of 250 MB.
    """

    def __init__(self) -> None:
        self._packed: dict[str, array] = {}

    def put(self, trial: str, points: Iterable[Mapping[str, Any]]) -> None:
        values = [point.get(name) for point in points for name in _CURVE_VALUES]
        try:  # numbers and None, as the trainer reports them
            self._packed[trial] = array("d", [math.nan if value is None else value for value in values])
        except TypeError:
            self._packed[trial] = array("d", [_as_float(value) for value in values])

    def discard(self, trial: str) -> None:
        self._packed.pop(trial, None)

    def packed(self, trial: str) -> array:
        return self._packed[trial]

    def __getitem__(self, trial: str) -> list[dict[str, Any]]:
        values, width = self._packed[trial], len(_CURVE_VALUES)
        points = []
        for start in range(0, len(values), width):
            point: dict[str, Any] = {"trial_id": trial}
            for name, value in zip(_CURVE_VALUES, values[start:start + width]):
                point[name] = None if math.isnan(value) else value
            if point["epoch"] is not None:
                point["epoch"] = int(point["epoch"])
            points.append(point)
        return points

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


class _ResultColumns:
    """The results rows held again as columns, in order of arrival: a materialisation copies lists, not cells."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}
        self.position: dict[str, int] = {}

    def put(self, row: Mapping[str, Any]) -> None:
        position = self.position.get(row["trial_id"])
        if position is None:
            position = self.position[row["trial_id"]] = len(self.position)
            for values in self.columns.values():
                values.append(None)
        else:  # a trial recorded again: its new row may lack a column the old one had
            for values in self.columns.values():
                values[position] = None
        for name, value in row.items():
            self.set_cell(position, name, value)

    def set_cell(self, position: int, name: str, value: Any) -> None:
        values = self.columns.get(name)
        if values is None:
            values = self.columns[name] = [None] * len(self.position)
        values[position] = value


@dataclass(frozen=True)
class _Snapshot:
    """What one materialisation writes: copies that the driver no longer changes, and the log length they hold."""

    columns: dict[str, list[Any]]  # results, in order of arrival
    order: list[int]               # positions of the rows sorted by trial id
    curve_trials: list[str]        # sorted
    curves: list[array]            # their packed curves
    log_bytes: int

    def results_table(self) -> Any:
        import pyarrow as pa

        table = pa.table({name: _arrow_column(values) for name, values in self.columns.items()})
        return table.take(pa.array(self.order, pa.int64())) if table.num_columns else table

    def curves_table(self) -> Any:
        import numpy as np
        import pyarrow as pa

        packed = array("d")
        counts = []
        for values in self.curves:
            packed.extend(values)
            counts.append(len(values) // len(_CURVE_VALUES))
        matrix = np.frombuffer(packed, dtype=np.float64).reshape(-1, len(_CURVE_VALUES)) if packed \
            else np.empty((0, len(_CURVE_VALUES)))
        indices = np.repeat(np.arange(len(self.curve_trials), dtype=np.int32), counts)
        columns = {"trial_id": pa.DictionaryArray.from_arrays(
            indices, pa.array(self.curve_trials, pa.string())).dictionary_decode()}
        for index, name in enumerate(_CURVE_VALUES):
            values = matrix[:, index]
            missing = np.isnan(values)
            if name == "epoch":
                columns[name] = pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing)
            else:
                columns[name] = pa.array(values, mask=missing)
        return pa.table(columns)


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        column = pa.array(values, from_pandas=True)  # NaN as null, as pandas wrote the tables before
        if pa.types.is_null(column.type) and any(isinstance(v, float) for v in values):
            # Only NaN so far (the first trial failed): still a float column, as it is once a trial completes.
            return pa.array(values, pa.float64(), from_pandas=True)
        return column
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # values of unlike types in one column: written as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _write_snapshot(folder: RunFolder, snapshot: _Snapshot) -> None:
    """Write results and curves, parquet and CSV, each through a temporary file and a rename."""
    import pyarrow as pa
    import pyarrow.csv as arrow_csv
    import pyarrow.parquet as parquet

    for table, binary, text in ((snapshot.results_table(), folder.results, folder.results_csv),
                                (snapshot.curves_table(), folder.curves, folder.curves_csv)):
        atomic_write_with(binary, partial(parquet.write_table, table))
        atomic_write_with(text, partial(arrow_csv.write_csv, table))
    del table
    # Give the tables' buffers back to the system: the driver would otherwise keep the largest write's worth.
    pa.default_memory_pool().release_unused()


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
        folder = tables.folder
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
