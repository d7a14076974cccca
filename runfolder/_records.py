"""A standard-library reader of the results: `models.load` works without pandas (or pyarrow, given results.csv)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._frames import _sorted_rows
from ._layout import RunFolder
from ._log import _log_tail, _Replay, replay_log
from ._untrusted import MAX_TABLE_BYTES, RunFolderError, _first_line, open_bounded
from ._ranking import RANKING_COLUMN
from ._rows import float_or_nan

LOAD_COLUMNS = ("trial_id", "status", RANKING_COLUMN, "arch_yaml", "checkpoint")


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


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _rows_from_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    with open_bounded(path, MAX_TABLE_BYTES, "r", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _rows_from_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise RunFolderError(f"{path}: reading it needs pyarrow (pip install pyarrow), and the run "
                             f"folder has no {path.with_suffix('.csv').name} to read instead") from None
    with open_bounded(path, MAX_TABLE_BYTES, "rb") as handle:  # one open file for the whole read (see _read_frame)
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
    folder = RunFolder(run_dir).checked()
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
        number = float_or_nan(row.get("number"))
        records.append(TrialRecord(
            trial_id=_text(row.get("trial_id")), number=None if math.isnan(number) else int(number),
            status=_text(row.get("status")), val_acc_best=float_or_nan(row.get(RANKING_COLUMN)),
            test_acc=float_or_nan(row.get("test_acc")), arch_yaml=_text(row.get("arch_yaml")),
            checkpoint=_text(row.get("checkpoint")).strip(), error=_text(row.get("error")),
        ))
    return records
